// RegexSplitter: matches and the gaps between them are both kept, empty matches only cut, and
// \s means Unicode White_Space (not PCRE2's, which adds U+180E).

#include "tokenizer/regex_split.h"

#include <gtest/gtest.h>

#include "util/error.h"

namespace cqkv::tokenizer_internal {
namespace {

std::string Pieces(std::string_view pattern, std::string_view text) {
  std::vector<std::unique_ptr<RegexSplitter>> steps;
  steps.push_back(std::make_unique<RegexSplitter>(pattern));
  std::string out;
  for (const auto& [b, n] : SplitAll(text, steps)) {
    out.append("[").append(text.substr(b, n)).append("]");
  }
  return out;
}

TEST(RegexSplit, GapsAreKeptAsPieces) {
  EXPECT_EQ(Pieces("[0-9]+", "ab12cd3"), "[ab][12][cd][3]");
  EXPECT_EQ(Pieces("[0-9]+", ""), "");
  EXPECT_EQ(Pieces("[0-9]+", "none"), "[none]");
}

TEST(RegexSplit, EmptyMatchesOnlyCut) {
  // A lookahead-only pattern (superbpe-style) cuts before every third-from-the-end digit.
  EXPECT_EQ(Pieces(R"((?=(\d{3})+(?!\d)))", "1234567"), "[1][234][567]");
}

TEST(RegexSplit, WhitespaceIsUnicodeWhiteSpace) {
  EXPECT_EQ(SpellWhitespace(R"(a\sb)").find("\\x{180E}"), std::string::npos);
  EXPECT_EQ(Pieces(R"(\s+)",
                   "a\xE2\x80\x83"
                   "b"),
            "[a][\xE2\x80\x83][b]");  // U+2003 EM SPACE
  EXPECT_EQ(Pieces(R"(\s+)",
                   "a\xE1\xA0\x8E"
                   "b"),
            "[a\xE1\xA0\x8E"
            "b]");  // U+180E is not
  EXPECT_EQ(Pieces(R"([^\s]+)", "x y"), "[x][ ][y]");
  EXPECT_EQ(Pieces(R"(\S+)", "x y"), "[x][ ][y]");
  // Escaped backslashes and class-leading ']' survive the rewrite.
  EXPECT_EQ(
      SpellWhitespace(R"(\\s[]\s])"),
      R"(\\s[]\t-\r\x{20}\x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}])");
}

TEST(RegexSplit, BadPatternNamesIt) {
  try {
    RegexSplitter bad("(unclosed");
    ADD_FAILURE() << "compiled";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("(unclosed"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace cqkv::tokenizer_internal
