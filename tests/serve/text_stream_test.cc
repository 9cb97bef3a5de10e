#include "serve/text_stream.h"

#include <gtest/gtest.h>

namespace cqkv {
namespace {

std::string PushAll(TextStream& s, const std::vector<std::string>& pieces) {
  std::string out;
  for (const auto& p : pieces) out += s.Push(p);
  return out;
}

TEST(TextStream, PassesTextThroughWithoutStops) {
  TextStream s;
  EXPECT_EQ(s.Push("Hello"), "Hello");
  EXPECT_EQ(s.Push(" world"), " world");
  EXPECT_EQ(s.Flush(), "");
  EXPECT_FALSE(s.stopped());
}

TEST(TextStream, StopStringAcrossPiecesIsNeverEmitted) {
  TextStream s({"\n\nUser:"});
  std::string out = PushAll(s, {"Sure", ".\n", "\nUs", "er", ": more"});
  EXPECT_TRUE(s.stopped());
  EXPECT_EQ(out, "Sure.");
  EXPECT_EQ(s.Push("ignored"), "");
}

TEST(TextStream, HeldBackPrefixIsReleasedWhenItDoesNotMatch) {
  TextStream s({"END"});
  EXPECT_EQ(s.Push("the E"), "the ");
  EXPECT_EQ(s.Push("N"), "");
  EXPECT_EQ(s.Push("D"), "");
  EXPECT_TRUE(s.stopped());
  TextStream t({"END"});
  EXPECT_EQ(t.Push("the EN"), "the ");
  EXPECT_EQ(t.Push("TRY"), "ENTRY");
  EXPECT_EQ(t.Push(" E"), " ");
  EXPECT_EQ(t.Flush(), "E");  // generation ended for another reason
}

TEST(TextStream, EarliestOfSeveralStopsWins) {
  TextStream s({"cd", "b"});
  EXPECT_EQ(s.Push("abcd"), "a");
}

TEST(TextStream, IncompleteUtf8IsHeldUntilComplete) {
  TextStream s;
  const std::string euro = "\xE2\x82\xAC";  // U+20AC in three bytes, arriving one by one
  std::string first = "a";
  first += euro[0];  // (appending, not "a" + ..., sidesteps a GCC 12 -Wrestrict false positive)
  EXPECT_EQ(s.Push(first), "a");
  EXPECT_EQ(s.Push(euro.substr(1, 1)), "");
  EXPECT_EQ(s.Push(euro.substr(2, 1)), euro);
}

}  // namespace
}  // namespace cqkv
