// The pre-tokenizer family table: every family compiles, tokenizer.ggml.pre values resolve the
// way llama.cpp's do, unknown ones fail naming the value, tokenizer.json regexes map onto the
// families, and the word rules that tell families apart hold on closed-form inputs.

#include "tokenizer/pretokenizer.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "gguf/gguf.h"
#include "test_util.h"
#include "tokenizer/regex_split.h"
#include "tokenizer/vocab_io.h"

namespace cqkv {
namespace {

using tokenizer_internal::RegexSplitter;
using tokenizer_internal::SplitAll;

std::string Words(std::string_view family, std::string_view text) {
  std::vector<std::unique_ptr<RegexSplitter>> steps;
  for (std::string_view p : FindPreTokenizer(family, "test").patterns) {
    steps.push_back(std::make_unique<RegexSplitter>(p));
  }
  std::string out;
  for (const auto& [b, n] : SplitAll(text, steps)) {
    out.append("[").append(text.substr(b, n)).append("]");
  }
  return out;
}

TEST(PreTokenizer, EveryFamilyCompilesAndKeepsEveryByte) {
  const std::string text = "Hello, World! It's 12345 days\t\n\n  ÄÖü 日本語 ﬁ 🦙 x\xC3";
  for (const PreTokenizerFamily& f : PreTokenizerFamilies()) {
    std::vector<std::unique_ptr<RegexSplitter>> steps;
    for (std::string_view p : f.patterns) steps.push_back(std::make_unique<RegexSplitter>(p));
    std::string joined;
    for (const auto& [b, n] : SplitAll(text, steps)) joined += text.substr(b, n);
    EXPECT_EQ(joined, text) << f.name;
  }
}

TEST(PreTokenizer, NamesAndAliasesResolveAsInLlamaCpp) {
  EXPECT_EQ(FindPreTokenizer("llama3", "f").name, "llama-bpe");
  EXPECT_TRUE(FindPreTokenizer("llama-bpe", "f").ignore_merges);
  EXPECT_TRUE(FindPreTokenizer("llama-bpe", "f").add_bos);
  EXPECT_EQ(FindPreTokenizer("deepseek-r1-qwen", "f").name, "qwen2");
  EXPECT_EQ(FindPreTokenizer("starcoder", "f").name, "smollm");
  EXPECT_EQ(FindPreTokenizer("llama4", "f").name, "gpt-4o");
  EXPECT_EQ(FindPreTokenizer("olmo", "f").name, "gpt-2");
  EXPECT_EQ(FindPreTokenizer("", "f").name, "default");  // llama.cpp's fallback when absent
  testing::ExpectErrorMentioning([] { FindPreTokenizer("kimi-k2", "model.gguf"); },
                                 {"model.gguf", "'kimi-k2'", "llama-bpe", "qwen2", "smollm"});
}

TEST(PreTokenizer, FamiliesDifferWhereTheyShould) {
  // Llama-3 groups digits in threes, Qwen2 and SmolLM split every digit, GPT-2 keeps the run.
  EXPECT_EQ(Words("llama-bpe", "x 12345"), "[x][ ][123][45]");
  EXPECT_EQ(Words("qwen2", "x 12345"), "[x][ ][1][2][3][4][5]");
  EXPECT_EQ(Words("smollm", "x 12345"), "[x][ ][1][2][3][4][5]");
  EXPECT_EQ(Words("gpt-2", "x 12345"), "[x][ 12345]");
  // Llama-3's letter runs take one leading non-letter; contractions either case.
  EXPECT_EQ(Words("llama-bpe", "(hello) DON'T"), "[(hello][)][ DON]['T]");
  EXPECT_EQ(Words("gpt-2", "(hello) DON'T"), "[(][hello][)][ DON]['][T]");
  // gpt-4o splits camel case words and keeps a trailing contraction on the word.
  EXPECT_EQ(Words("gpt-4o", "HelloWorld isn't"), "[Hello][World][ isn't]");
  // Newline runs are their own words in the Llama-3 rule.
  EXPECT_EQ(Words("llama-bpe", "a\n\n b"), "[a][\n\n][ b]");
}

TEST(PreTokenizer, TokenizerJsonRegexesMatchTheirFamily) {
  // The patterns as Hugging Face writes them (case-insensitive contraction group).
  const std::string llama3 =
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  const std::string qwen2 =
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  ASSERT_NE(MatchPreTokenizer({llama3}), nullptr);
  EXPECT_EQ(MatchPreTokenizer({llama3})->name, "llama-bpe");
  ASSERT_NE(MatchPreTokenizer({qwen2}), nullptr);
  EXPECT_EQ(MatchPreTokenizer({qwen2})->name, "qwen2");
  ASSERT_NE(MatchPreTokenizer({R"(\p{N})", std::string(Gpt2WordPattern())}), nullptr);
  EXPECT_EQ(MatchPreTokenizer({R"(\p{N})", std::string(Gpt2WordPattern())})->name, "smollm");
  const std::string gpt4o =
      R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?)"
      R"(|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?)"
      R"(|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  ASSERT_NE(MatchPreTokenizer({gpt4o}), nullptr);
  EXPECT_EQ(MatchPreTokenizer({gpt4o})->name, "gpt-4o");
  EXPECT_EQ(MatchPreTokenizer({"[a-z]+"}), nullptr);
}

TEST(PreTokenizer, GgufWithUnknownPreNamesFileAndValue) {
  const std::string path = ::testing::TempDir() + "/unknown_pre.gguf";
  GgufWriter w;
  w.Set("general.architecture", GgufValue::Str("llama"));
  w.Set("tokenizer.ggml.model", GgufValue::Str("gpt2"));
  w.Set("tokenizer.ggml.pre", GgufValue::Str("no-such-pre"));
  w.Set("tokenizer.ggml.tokens", GgufValue::StrArray({"a", "b", "ab"}));
  w.Set("tokenizer.ggml.merges", GgufValue::StrArray({"a b"}));
  w.Write(path);
  testing::ExpectErrorMentioning([&] { VocabFromGguf(*GgufFile::Open(path)); },
                                 {path, "tokenizer.ggml.pre", "'no-such-pre'", "supported"});
}

}  // namespace
}  // namespace cqkv
