// Hugging Face tokenizer.json: the pre_tokenizer maps onto the same families as GGUF's
// tokenizer.ggml.pre. The Llama-3 and Qwen2 vocabularies of llama.cpp's test GGUFs are written
// back out as tokenizer.json files the way Hugging Face spells them (Split with the original
// regex, ByteLevel without its own regex, added tokens) and must reproduce every test vector.
// Malformed fields fail naming the field and the file.

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>

#include "gguf/gguf.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/vocab_io.h"
#include "vector_cases.h"

namespace cqkv {
namespace {

using Json = nlohmann::json;

std::string WriteJson(const std::string& name, const Json& j) {
  const std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path) << j.dump();
  return path;
}

// tokenizer.json from a GGUF vocabulary: model.vocab and merges as stored, control tokens as
// special added tokens.
Json JsonFromGguf(const Vocab& v, const std::string& split_regex, bool ignore_merges) {
  Json vocab = Json::object();
  Json added = Json::array();
  for (size_t i = 0; i < v.tokens.size(); ++i) {
    if (v.types[i] == TokenType::kControl) {
      added.push_back({{"id", i}, {"content", v.tokens[i]}, {"special", true}});
    } else {
      vocab[v.tokens[i]] = i;
    }
  }
  Json j;
  j["added_tokens"] = added;
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers",
       {{{"type", "Split"},
         {"pattern", {{"Regex", split_regex}}},
         {"behavior", "Isolated"},
         {"invert", false}},
        {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
  j["decoder"] = {{"type", "ByteLevel"}};
  j["model"] = {
      {"type", "BPE"}, {"ignore_merges", ignore_merges}, {"vocab", vocab}, {"merges", v.merges}};
  return j;
}

void CheckJsonAgainstVectors(const std::string& name, const std::string& regex, bool ignore_merges,
                             const std::string& want_family) {
  const std::string gguf =
      testing::SharedPath("tests/tokenizer-vectors/ggml-vocab-" + name + ".gguf");
  if (!std::filesystem::exists(gguf)) GTEST_SKIP() << "shared tokenizer vectors absent";
  const Vocab from_gguf = VocabFromGguf(*GgufFile::Open(gguf));
  Json j = JsonFromGguf(from_gguf, regex, ignore_merges);
  if (name == "qwen2") j["normalizer"] = {{"type", "NFC"}};  // as Qwen2 ships it
  const std::string path = WriteJson(name + ".tokenizer.json", j);
  auto tok = MakeTokenizer(ReadHfTokenizerJson(path));
  EXPECT_EQ(tok->vocab().pre, want_family);
  EXPECT_EQ(tok->vocab().ignore_merges, ignore_merges);
  EXPECT_EQ(tok->size(), static_cast<int32_t>(from_gguf.tokens.size()));
  int matched = 0;
  const auto cases = testing::ReadVectorCases(gguf);
  for (const auto& c : cases) {
    const std::vector<int32_t> got = tok->Encode(c.text, false);
    if (got == c.ids) {
      ++matched;
    } else {
      ADD_FAILURE() << name << " json: '" << c.text << "'\n  want " << testing::IdList(c.ids)
                    << "\n  got  " << testing::IdList(got);
    }
  }
  std::printf("%s via tokenizer.json: %d/%zu vectors match\n", name.c_str(), matched, cases.size());
}

TEST(HfTokenizerJson, Llama3FamilyMatchesVectors) {
  CheckJsonAgainstVectors(
      "llama-bpe",
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
      true, "llama-bpe");
}

TEST(HfTokenizerJson, Qwen2FamilyMatchesVectors) {
  CheckJsonAgainstVectors(
      "qwen2",
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
      false, "qwen2");
}

TEST(HfTokenizerJson, SmolLM2IsTheSmollmFamilyWithSpecialAddedTokens) {
  if (!testing::HaveShared("tokenizers/smollm2.tokenizer.json")) GTEST_SKIP();
  auto tok =
      MakeTokenizer(ReadHfTokenizerJson(testing::SharedPath("tokenizers/smollm2.tokenizer.json")));
  EXPECT_EQ(tok->vocab().pre, "smollm");
  EXPECT_EQ(tok->vocab().types[1], TokenType::kControl);  // <|im_start|>, special in the json
  // Digits one by one (the Digits step), and chatml markers only with parse_special.
  const std::vector<int32_t> digits = tok->Encode("2024", false);
  EXPECT_EQ(digits.size(), 4u) << testing::IdList(digits);
  const std::vector<int32_t> chat =
      tok->Encode("<|im_start|>user\nHi<|im_end|>", EncodeOptions{false, true});
  ASSERT_GE(chat.size(), 3u);
  EXPECT_EQ(chat.front(), 1);
  EXPECT_EQ(chat.back(), 2);
  const std::vector<int32_t> plain = tok->Encode("<|im_start|>", false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 1), 0) << testing::IdList(plain);
}

Json Toy() {
  return Json::parse(R"({
    "added_tokens": [{"id": 3, "content": "<s>", "special": true}],
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false},
    "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}
  })");
}

TEST(HfTokenizerJson, StrictFieldsNameFieldAndFile) {
  EXPECT_EQ(ReadHfTokenizerJson(WriteJson("ok.json", Toy())).pre, "gpt-2");
  struct Bad {
    const char* name;
    std::function<void(Json&)> edit;
    std::vector<std::string> mention;
  };
  const std::vector<Bad> bad = {
      {"float_id.json",
       [](Json& j) { j["model"]["vocab"]["a"] = 1.5; },
       {"model.vocab['a']", "integer"}},
      {"string_id.json", [](Json& j) { j["model"]["vocab"]["a"] = "0"; }, {"model.vocab['a']"}},
      {"object_id.json",
       [](Json& j) {
         j["model"]["vocab"]["b"] = {{"id", 1}};
       },
       {"model.vocab['b']"}},
      {"merge_kind.json", [](Json& j) { j["model"]["merges"] = {7}; }, {"merge", "7"}},
      {"neg_id.json", [](Json& j) { j["model"]["vocab"]["a"] = -1; }, {"model.vocab['a']", "-1"}},
      {"huge_id.json",
       [](Json& j) { j["model"]["vocab"]["a"] = 1ull << 40; },
       {"model.vocab['a']"}},
      {"added_id.json", [](Json& j) { j["added_tokens"][0]["id"] = 3.0; }, {"added_tokens[0].id"}},
      {"added_special.json",
       [](Json& j) { j["added_tokens"][0]["special"] = "yes"; },
       {"added_tokens[0]", "special"}},
      {"behavior.json",
       [](Json& j) {
         j["pre_tokenizer"] = {
             {"type", "Split"}, {"pattern", {{"Regex", "a"}}}, {"behavior", "Removed"}};
       },
       {"pre_tokenizer.behavior", "Removed"}},
      {"regex.json",
       [](Json& j) {
         j["pre_tokenizer"] = {
             {"type", "Sequence"},
             {"pretokenizers",
              {{{"type", "Split"}, {"pattern", {{"Regex", "[a-z]+"}}}, {"behavior", "Isolated"}},
               {{"type", "ByteLevel"}, {"use_regex", false}}}}};
       },
       {"'[a-z]+'", "supported family", "llama-bpe"}},
      {"pre_type.json",
       [](Json& j) {
         j["pre_tokenizer"] = {{"type", "Whitespace"}};
       },
       {"pre_tokenizer.type", "Whitespace"}},
      {"normalizer.json",
       [](Json& j) {
         j["normalizer"] = {{"type", "Lowercase"}};
       },
       {"normalizer", "Lowercase"}},
  };
  for (const Bad& b : bad) {
    Json j = Toy();
    b.edit(j);
    const std::string path = WriteJson(b.name, j);
    std::vector<std::string> mention = b.mention;
    mention.push_back(path);
    testing::ExpectErrorMentioning([&] { ReadHfTokenizerJson(path); }, mention);
  }
}

}  // namespace
}  // namespace cqkv
