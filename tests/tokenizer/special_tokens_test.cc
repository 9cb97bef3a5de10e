// Special tokens: control tokens never come out of plain text; with parse_special their text is
// split out first and mapped to the token, as llama.cpp's tokenize(parse_special=true) does.
// Expected ids are built from the plain-text encodings of the pieces between special tokens
// (llama.cpp tokenizes those pieces independently) and the vocabularies' own ids.

#include "tokenizer/special_tokens.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "gguf/gguf.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/vocab_io.h"
#include "vector_cases.h"

namespace cqkv {
namespace {

using testing::IdList;
using tokenizer_internal::Fragment;
using tokenizer_internal::SpecialTokenSplitter;

std::unique_ptr<Tokenizer> VectorVocab(const std::string& name) {
  const std::string path =
      testing::SharedPath("tests/tokenizer-vectors/ggml-vocab-" + name + ".gguf");
  return MakeTokenizer(VocabFromGguf(*GgufFile::Open(path)));
}

#define REQUIRE_VOCAB(name)                                                       \
  do {                                                                            \
    if (!testing::HaveShared("tests/tokenizer-vectors/ggml-vocab-" name ".gguf")) \
      GTEST_SKIP() << "shared tokenizer vectors absent";                          \
  } while (0)

std::vector<int32_t> Concat(std::initializer_list<std::vector<int32_t>> parts) {
  std::vector<int32_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

const EncodeOptions kParse{/*add_bos=*/false, /*parse_special=*/true};
const EncodeOptions kPlain{/*add_bos=*/false, /*parse_special=*/false};

TEST(SpecialTokens, Llama3ChatMarkersBecomeTokens) {
  REQUIRE_VOCAB("llama-bpe");
  auto tok = VectorVocab("llama-bpe");
  const std::string text =
      "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>";
  const std::vector<int32_t> want = Concat({{128000, 128006},
                                            tok->Encode("user", false),
                                            {128007},
                                            tok->Encode("\n\nHi there", false),
                                            {128009}});
  EXPECT_EQ(IdList(tok->Encode(text, kParse)), IdList(want));

  // Without parse_special the markers are text: no control token appears.
  const std::vector<int32_t> plain = tok->Encode(text, kPlain);
  for (int32_t id : plain) EXPECT_LT(id, 128000) << IdList(plain);
  EXPECT_GT(plain.size(), want.size());
  // And BOS comes from add_bos only, once.
  EXPECT_EQ(tok->Encode("Hi", EncodeOptions{true, true}).front(), 128000);
}

TEST(SpecialTokens, QwenChatml) {
  REQUIRE_VOCAB("qwen2");
  auto tok = VectorVocab("qwen2");
  const std::string text = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>assistant\n";
  const std::vector<int32_t> want = Concat({{151644},
                                            tok->Encode("system\nBe brief.", false),
                                            {151645},
                                            tok->Encode("\n", false),
                                            {151644},
                                            tok->Encode("assistant\n", false)});
  EXPECT_EQ(IdList(tok->Encode(text, kParse)), IdList(want));
  const std::vector<int32_t> plain = tok->Encode(text, kPlain);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 151644), 0) << IdList(plain);
}

TEST(SpecialTokens, SentencePiecePrefixesTheSpaceAfterEachSpecialToken) {
  REQUIRE_VOCAB("llama-spm");
  auto tok = VectorVocab("llama-spm");
  // llama.cpp: the piece after a special token starts a new "sentence", so it gets the space
  // prefix again; the text before it does not get one in the middle.
  const std::vector<int32_t> want =
      Concat({tok->Encode("Hello", false), {2, 1}, tok->Encode("world", false)});
  EXPECT_EQ(IdList(tok->Encode("Hello</s><s>world", kParse)), IdList(want));
  EXPECT_EQ(IdList(tok->Encode("<s>", kParse)), "[1]");
  EXPECT_EQ(IdList(tok->Encode("<unk>", kParse)), "[0]");  // unknown is special too
  const std::vector<int32_t> plain = tok->Encode("Hello</s><s>world", kPlain);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 1), 0) << IdList(plain);
}

Vocab ToyVocab() {
  Vocab v;
  v.model = "gpt2";
  v.tokens = {"a", "b", "<x>", "<x><y>", "[u]", "<y>", "x<"};
  v.types = {TokenType::kNormal,      TokenType::kNormal,  TokenType::kControl, TokenType::kControl,
             TokenType::kUserDefined, TokenType::kControl, TokenType::kControl};
  return v;
}

std::string Show(std::string_view text, const std::vector<Fragment>& frags) {
  std::string s;
  for (const Fragment& f : frags) {
    if (f.token >= 0) {
      s.append("#").append(std::to_string(f.token)).append(" ");
    } else {
      s.append("'").append(text.substr(f.begin, f.len)).append("' ");
    }
  }
  return s;
}

TEST(SpecialTokens, PartitionOrderIsLongestTokenFirst) {
  const Vocab v = ToyVocab();
  const SpecialTokenSplitter s(v);
  std::string_view t = "a<x><y>b<x>";
  EXPECT_EQ(Show(t, s.Partition(t, true)), "'a' #3 'b' #2 ");
  // User-defined tokens are split out even without parse_special; control ones are not.
  t = "a[u]<x>b";
  EXPECT_EQ(Show(t, s.Partition(t, false)), "'a' #4 '<x>b' ");
  EXPECT_EQ(Show(t, s.Partition(t, true)), "'a' #4 #2 'b' ");
  // llama.cpp matches the longer token everywhere before the shorter overlapping one: in
  // "x<x><y>" the 6-byte <x><y> wins over the 2-byte x< that starts one byte earlier.
  t = "x<x><y>";
  EXPECT_EQ(Show(t, s.Partition(t, true)), "'x' #3 ");
  t = "";
  EXPECT_TRUE(s.Partition(t, true).empty());
  t = "plain";
  EXPECT_EQ(Show(t, s.Partition(t, true)), "'plain' ");
}

}  // namespace
}  // namespace cqkv
