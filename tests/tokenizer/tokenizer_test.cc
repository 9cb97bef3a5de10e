// Tokenizer tests: llama.cpp's reference vectors (SentencePiece and GPT-2 vocabularies) must match
// exactly; the llama2.c and Hugging Face readers must agree with them and round-trip text.

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include "gguf/gguf.h"
#include "tokenizer/detokenize.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/vocab_io.h"
#include "util/error.h"
#include "util/mapped_file.h"
#include "vector_cases.h"

namespace cqkv {
namespace {

namespace fs = std::filesystem;

std::string Shared(const std::string& rel) { return std::string(CQKV_SHARED_DIR) + "/" + rel; }

#define REQUIRE_SHARED(rel)                                                              \
  do {                                                                                   \
    if (!fs::exists(Shared(rel))) GTEST_SKIP() << "shared data absent: " << Shared(rel); \
  } while (0)

using Case = testing::VectorCase;
std::string Ids(const std::vector<int32_t>& ids) { return testing::IdList(ids); }
std::vector<Case> ReadCases(const std::string& path) { return testing::ReadVectorCases(path); }

std::unique_ptr<Tokenizer> FromGguf(const std::string& rel) {
  auto gguf = GgufFile::Open(Shared(rel));
  return MakeTokenizer(VocabFromGguf(*gguf));
}

void CheckVectors(const std::string& rel) {
  auto tok = FromGguf(rel);
  const std::vector<Case> cases = ReadCases(Shared(rel));
  ASSERT_GE(cases.size(), 40u);
  int matched = 0;
  for (const Case& c : cases) {
    const std::vector<int32_t> got = tok->Encode(c.text, /*add_bos=*/false);
    if (got == c.ids) {
      ++matched;
    } else {
      ADD_FAILURE() << rel << ": text '" << c.text << "'\n  want " << Ids(c.ids) << "\n  got  "
                    << Ids(got);
    }
  }
  std::printf("%s: %d/%zu vectors match\n", rel.c_str(), matched, cases.size());
}

TEST(TokenizerVectors, LlamaSpm) {
  REQUIRE_SHARED("tests/tokenizer-vectors/ggml-vocab-llama-spm.gguf");
  CheckVectors("tests/tokenizer-vectors/ggml-vocab-llama-spm.gguf");
}

TEST(TokenizerVectors, Gpt2) {
  REQUIRE_SHARED("tests/tokenizer-vectors/ggml-vocab-gpt-2.gguf");
  CheckVectors("tests/tokenizer-vectors/ggml-vocab-gpt-2.gguf");
}

// Llama-3's 128K vocabulary: pre-tokenizer family llama-bpe (ignore_merges, digits in threes).
TEST(TokenizerVectors, LlamaBpe) {
  REQUIRE_SHARED("tests/tokenizer-vectors/ggml-vocab-llama-bpe.gguf");
  CheckVectors("tests/tokenizer-vectors/ggml-vocab-llama-bpe.gguf");
}

// Qwen2's 151K vocabulary: pre-tokenizer family qwen2 (single digits).
TEST(TokenizerVectors, Qwen2) {
  REQUIRE_SHARED("tests/tokenizer-vectors/ggml-vocab-qwen2.gguf");
  CheckVectors("tests/tokenizer-vectors/ggml-vocab-qwen2.gguf");
}

// More of llama.cpp's test vocabularies (models/ggml-vocab-*.gguf with .inp/.out), one per
// pre-tokenizer family; mpt and deepseek-coder also carry user-defined tokens, which are split
// out before pre-tokenization. Each runs when its files are in shared/.
TEST(TokenizerVectors, MoreFamilies) {
  int ran = 0;
  for (const char* name :
       {"deepseek-coder", "deepseek-llm", "falcon", "mpt", "refact", "starcoder"}) {
    const std::string rel = std::string("tests/tokenizer-vectors/ggml-vocab-") + name + ".gguf";
    if (!fs::exists(Shared(rel)) || !fs::exists(Shared(rel + ".out"))) continue;
    CheckVectors(rel);
    ++ran;
  }
  if (ran == 0) GTEST_SKIP() << "no further llama.cpp vocabularies in shared/";
}

const std::vector<std::string>& RoundTripTexts() {
  static const std::vector<std::string> texts = {
      "Hello world",
      " leading space and trailing  ",
      "tabs\tand\nnew\n\nlines\r\n",
      "Ünïcödé — “quotes”, 日本語のテキスト, Ελληνικά, русский",
      "emoji 🦙🚀👩‍👩‍👧 and flags 🇩🇪",
      "numbers 3.14159 and 1,000,000; code: for (int i=0;i<n;++i) {x[i]*=2;}",
      "",
      "   ",
      "\xF0\x9F\x98\x80",  // a 4-byte character alone (byte fallback in the 260K vocabulary)
  };
  return texts;
}

TEST(Tokenizer, Llama2cMatchesGgufVocab) {
  REQUIRE_SHARED("tokenizers/llama2.tokenizer.bin");
  REQUIRE_SHARED("tests/tokenizer-vectors/ggml-vocab-llama-spm.gguf");
  auto bin = MakeTokenizer(ReadLlama2cVocab(Shared("tokenizers/llama2.tokenizer.bin")));
  auto gguf = FromGguf("tests/tokenizer-vectors/ggml-vocab-llama-spm.gguf");
  ASSERT_EQ(bin->size(), 32000);
  EXPECT_EQ(bin->bos(), 1);
  EXPECT_EQ(bin->eos(), 2);
  EXPECT_TRUE(bin->vocab().add_bos);
  EXPECT_EQ(bin->Encode("Hello world", true), (std::vector<int32_t>{1, 15043, 3186}));
  // Same pieces, scores and types as llama.cpp's conversion of the same SentencePiece model.
  EXPECT_EQ(bin->vocab().tokens, gguf->vocab().tokens);
  EXPECT_EQ(bin->vocab().scores, gguf->vocab().scores);
  EXPECT_EQ(bin->vocab().types, gguf->vocab().types);

  std::vector<std::string> texts = RoundTripTexts();
  for (const Case& c : ReadCases(Shared("tests/tokenizer-vectors/ggml-vocab-llama-spm.gguf"))) {
    texts.push_back(c.text);
  }
  for (const std::string& t : texts) {
    EXPECT_EQ(Ids(bin->Encode(t, true)), Ids(gguf->Encode(t, true))) << "text '" << t << "'";
  }
}

void CheckRoundTrips(const Tokenizer& tok, const std::string& name) {
  for (const std::string& t : RoundTripTexts()) {
    const std::vector<int32_t> ids = tok.Encode(t, tok.vocab().add_bos);
    EXPECT_EQ(Detokenize(tok, ids), t) << name << ": ids " << Ids(ids);
  }
}

TEST(Tokenizer, RoundTrips) {
  REQUIRE_SHARED("tokenizers/llama2.tokenizer.bin");
  REQUIRE_SHARED("tests/tokenizer-vectors/ggml-vocab-gpt-2.gguf");
  CheckRoundTrips(*MakeTokenizer(ReadLlama2cVocab(Shared("tokenizers/llama2.tokenizer.bin"))),
                  "llama2");
  CheckRoundTrips(*FromGguf("tests/tokenizer-vectors/ggml-vocab-llama-spm.gguf"), "llama-spm");
  CheckRoundTrips(*FromGguf("tests/tokenizer-vectors/ggml-vocab-gpt-2.gguf"), "gpt-2");
}

// Where two long strings first differ, for failure messages that stay readable.
std::string FirstDifference(const std::string& got, const std::string& want) {
  size_t i = 0;
  while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
  if (i == got.size() && i == want.size()) return "";
  return "sizes " + std::to_string(got.size()) + " vs " + std::to_string(want.size()) +
         ", first difference at byte " + std::to_string(i) + ": got '" + got.substr(i, 12) +
         "' want '" + want.substr(i, 12) + "'";
}

// Whole-file inputs hit paths short strings do not: one huge merge sequence, long regex matches,
// rare characters (byte fallback) and, for the byte-level BPE, bytes that are not UTF-8 at all.
TEST(Tokenizer, LongAndUnusualInputsRoundTrip) {
  REQUIRE_SHARED("tokenizers/llama2.tokenizer.bin");
  REQUIRE_SHARED("tests/tokenizer-vectors/ggml-vocab-gpt-2.gguf");
  uint32_t state = 12345;
  auto next = [&] { return state = state * 1664525u + 1013904223u; };
  std::string random_bytes, random_chars, letters;
  for (int i = 0; i < 50000; ++i) random_bytes.push_back(static_cast<char>(next() >> 24));
  for (int i = 0; i < 20000; ++i) {
    uint32_t cp = next() % 0x30000;             // BMP and the emoji/CJK-extension planes
    if (cp >= 0xD800 && cp < 0xE000) cp = ' ';  // surrogates are not characters
    if (cp == 0x2581) cp = ' ';  // SentencePiece's space mark reads back as a space, by design
    tokenizer_internal::AppendUtf8(cp, random_chars);
  }
  for (int i = 0; i < 100000; ++i) letters.push_back(static_cast<char>('a' + i * 7 % 26));
  std::vector<std::string> texts = {
      std::string(200000, ' '),
      std::string(100000, 'a'),
      letters,
      std::string(50000, '!') + std::string(50000, '\n'),
      random_chars,
      "a\xC2\x85"
      "b\xE1\xA0\x8E"
      "c \xE3\x80\x80 d",  // U+0085, U+180E, U+3000
  };
  auto spm = MakeTokenizer(ReadLlama2cVocab(Shared("tokenizers/llama2.tokenizer.bin")));
  auto gpt2 = FromGguf("tests/tokenizer-vectors/ggml-vocab-gpt-2.gguf");
  std::vector<std::unique_ptr<Tokenizer>> bpe;
  bpe.push_back(std::move(gpt2));
  // The Llama-3 and Qwen2 regexes backtrack differently (\s*[\r\n]+ before \s+(?!\S)).
  for (const char* name : {"llama-bpe", "qwen2"}) {
    const std::string rel = std::string("tests/tokenizer-vectors/ggml-vocab-") + name + ".gguf";
    if (fs::exists(Shared(rel))) bpe.push_back(FromGguf(rel));
  }
  std::vector<const Tokenizer*> all = {spm.get()};
  for (const auto& t : bpe) all.push_back(t.get());
  for (const Tokenizer* tok : all) {
    for (size_t i = 0; i < texts.size(); ++i) {
      const std::vector<int32_t> ids = tok->Encode(texts[i], false);
      EXPECT_EQ(FirstDifference(Detokenize(*tok, ids), texts[i]), "")
          << tok->vocab().model << "/" << tok->vocab().pre << " text #" << i;
    }
  }
  // Invalid UTF-8 round-trips through the byte alphabet. (Not through SentencePiece: like
  // llama.cpp it reads a stray lead byte as a multi-byte character, which can swallow part of
  // the U+2581 that replaced a following space.)
  for (const auto& t : bpe) {
    EXPECT_EQ(FirstDifference(Detokenize(*t, t->Encode(random_bytes, false)), random_bytes), "")
        << t->vocab().pre;
  }
}

TEST(Tokenizer, Stories260KVocab) {
  REQUIRE_SHARED("models/stories260K/tokenizer.bin");
  auto tok = MakeTokenizer(ReadLlama2cVocab(Shared("models/stories260K/tokenizer.bin")));
  EXPECT_EQ(tok->size(), 512);
  EXPECT_EQ(tok->Decode(1), "");  // control tokens print nothing
  const std::vector<int32_t> ids = tok->Encode("Once upon a time, there was a little girl.", true);
  EXPECT_EQ(ids.front(), 1);
  EXPECT_LT(ids.size(), 30u);  // merges happen: far fewer tokens than characters
  CheckRoundTrips(*tok, "stories260K");
}

TEST(Tokenizer, SmolLM2Json) {
  REQUIRE_SHARED("tokenizers/smollm2.tokenizer.json");
  auto tok = MakeTokenizer(ReadHfTokenizerJson(Shared("tokenizers/smollm2.tokenizer.json")));
  EXPECT_EQ(tok->size(), 49152);
  EXPECT_FALSE(tok->vocab().add_bos);
  EXPECT_EQ(tok->vocab().tokens[tok->eos()], "<|endoftext|>");
  const std::vector<int32_t> ids = tok->Encode("Hello world", false);
  ASSERT_EQ(ids.size(), 2u) << Ids(ids);
  EXPECT_EQ(tok->vocab().tokens[ids[0]], "Hello");
  EXPECT_EQ(tok->vocab().tokens[ids[1]], "\xC4\xA0world");  // "Ġworld"
  EXPECT_EQ(tok->Decode(ids[1]), " world");
  CheckRoundTrips(*tok, "smollm2");
}

fs::path TempFile(const std::string& name) { return fs::path(::testing::TempDir()) / name; }

void WriteBytes(const fs::path& p, const std::string& bytes) {
  std::ofstream f(p, std::ios::binary);
  f << bytes;
}

void ExpectThrowsMentioning(const std::function<void()>& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "no cqkv::Error; expected one mentioning " << needle;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(Tokenizer, TruncatedLlama2cVocabThrows) {
  REQUIRE_SHARED("models/stories260K/tokenizer.bin");
  const std::string bytes = ReadFile(Shared("models/stories260K/tokenizer.bin"));
  for (size_t cut : {size_t{2}, size_t{6}, size_t{13}, bytes.size() - 1}) {
    const fs::path p = TempFile("truncated_" + std::to_string(cut) + ".bin");
    WriteBytes(p, bytes.substr(0, cut));
    ExpectThrowsMentioning([&] { ReadLlama2cVocab(p.string()); }, p.string());
  }
  ExpectThrowsMentioning([&] { ReadLlama2cVocab(TempFile("missing.bin").string()); },
                         "missing.bin");
}

TEST(Tokenizer, GgufWithoutTokenizerNamesFileAndKey) {
  const fs::path p = TempFile("no_tokens.gguf");
  GgufWriter w;
  w.Set("general.architecture", GgufValue::Str("llama"));
  w.Set("tokenizer.ggml.model", GgufValue::Str("llama"));
  w.Write(p.string());
  auto g = GgufFile::Open(p.string());
  ExpectThrowsMentioning([&] { VocabFromGguf(*g); }, "tokenizer.ggml.tokens");
  ExpectThrowsMentioning([&] { VocabFromGguf(*g); }, p.string());

  const fs::path q = TempFile("no_model.gguf");
  GgufWriter w2;
  w2.Set("general.architecture", GgufValue::Str("llama"));
  w2.Write(q.string());
  auto g2 = GgufFile::Open(q.string());
  ExpectThrowsMentioning([&] { VocabFromGguf(*g2); }, "tokenizer.ggml.model");
}

TEST(Tokenizer, HfJsonPairMergesAndTemplateBos) {
  // A toy byte-level BPE in the newer [left, right] merge format with a BOS template.
  const fs::path p = TempFile("toy_tokenizer.json");
  WriteBytes(p, R"({
    "added_tokens": [{"id": 5, "content": "<bos>", "special": true}],
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false},
    "post_processor": {"type": "TemplateProcessing",
                       "single": [{"SpecialToken": {"id": "<bos>", "type_id": 0}},
                                  {"Sequence": {"id": "A", "type_id": 0}}]},
    "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "Ġ": 3, "Ġab": 4},
              "merges": [["a", "b"], ["Ġ", "ab"]]}
  })");
  auto tok = MakeTokenizer(ReadHfTokenizerJson(p.string()));
  EXPECT_EQ(tok->bos(), 5);
  EXPECT_TRUE(tok->vocab().add_bos);
  EXPECT_EQ(tok->Encode("ab ab", true), (std::vector<int32_t>{5, 2, 4}));

  const fs::path q = TempFile("wordpiece.json");
  WriteBytes(q, R"({"model": {"type": "WordPiece", "vocab": {"a": 0}}})");
  ExpectThrowsMentioning([&] { ReadHfTokenizerJson(q.string()); }, q.string());
}

double SecondsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Not a pass/fail check on speed: perplexity tokenizes whole files as one string, so report
// load time and throughput per vocabulary (same process, same text). Round trips must hold.
TEST(Tokenizer, WikitextLoadAndEncodeSpeed) {
  REQUIRE_SHARED("data/wikitext-2/wiki.test.raw");
  REQUIRE_SHARED("tokenizers/llama2.tokenizer.bin");
  const std::string text = ReadFile(Shared("data/wikitext-2/wiki.test.raw"));
  struct Entry {
    const char* name;
    std::string rel;
  };
  const std::vector<Entry> entries = {
      {"llama2 (SPM, 32K)", "tokenizers/llama2.tokenizer.bin"},
      {"gpt-2 (BPE, 50K)", "tests/tokenizer-vectors/ggml-vocab-gpt-2.gguf"},
      {"llama-bpe (Llama-3, 128K)", "tests/tokenizer-vectors/ggml-vocab-llama-bpe.gguf"},
      {"qwen2 (151K)", "tests/tokenizer-vectors/ggml-vocab-qwen2.gguf"},
  };
  for (const Entry& e : entries) {
    if (!fs::exists(Shared(e.rel))) continue;
    const auto t0 = std::chrono::steady_clock::now();
    auto tok =
        e.rel.ends_with(".gguf") ? FromGguf(e.rel) : MakeTokenizer(ReadLlama2cVocab(Shared(e.rel)));
    const double load = SecondsSince(t0);
    const auto t1 = std::chrono::steady_clock::now();
    const std::vector<int32_t> ids = tok->Encode(text, true);
    const double s = SecondsSince(t1);
    std::printf("%-26s load %.3f s; wiki.test.raw (%zu bytes): %zu tokens in %.3f s (%.1f MB/s)\n",
                e.name, load, text.size(), ids.size(), s, text.size() / s / 1e6);
    EXPECT_EQ(FirstDifference(Detokenize(*tok, ids), text), "") << e.name;
  }
}

}  // namespace
}  // namespace cqkv
