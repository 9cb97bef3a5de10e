// Vocabulary readers for GGUF metadata and llama2.c tokenizer.bin. Both produce the SentencePiece
// conventions the "llama" tokenizer expects (U+2581 for space, typed <0xNN> byte pieces).

#include "tokenizer/vocab_io.h"

#include <cstring>

#include "gguf/gguf.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/tokenizer_impl.h"
#include "util/error.h"
#include "util/mapped_file.h"

namespace cqkv {
namespace {

constexpr const char* kModelKey = "tokenizer.ggml.model";
constexpr const char* kTokensKey = "tokenizer.ggml.tokens";
constexpr const char* kScoresKey = "tokenizer.ggml.scores";
constexpr const char* kTypesKey = "tokenizer.ggml.token_type";
constexpr const char* kMergesKey = "tokenizer.ggml.merges";

// A special-token id from GGUF. Writers store "none" as -1 or as 0xFFFFFFFF in a uint32.
int32_t SpecialId(const GgufFile& g, const char* key, int32_t def, size_t n_tokens) {
  const int64_t id = g.GetInt(key, def);
  if (id == -1 || id == 0xFFFFFFFFll) return -1;
  CQKV_CHECK(id >= 0 && id < static_cast<int64_t>(n_tokens), "{}: {} = {} is outside the {} tokens",
             g.path(), key, id, n_tokens);
  return static_cast<int32_t>(id);
}

}  // namespace

Vocab VocabFromGguf(const GgufFile& g) {
  const std::string& path = g.path();
  CQKV_CHECK(g.Has(kModelKey), "{}: no tokenizer: metadata key {} is missing", path, kModelKey);
  Vocab v;
  v.model = g.GetString(kModelKey);
  CQKV_CHECK(v.model == "llama" || v.model == "gpt2",
             "{}: {} = '{}' is not supported (supported: llama, gpt2)", path, kModelKey, v.model);
  const bool spm = v.model == "llama";

  v.tokens = g.GetStringArray(kTokensKey);  // throws naming key and file when missing
  const size_t n = v.tokens.size();
  CQKV_CHECK(n > 0, "{}: {} is empty", path, kTokensKey);
  if (g.Has(kScoresKey)) {
    v.scores = g.GetFloatArray(kScoresKey);
    CQKV_CHECK(v.scores.size() == n, "{}: {} has {} entries for {} tokens", path, kScoresKey,
               v.scores.size(), n);
  } else if (spm) {
    v.scores.assign(n, 0.0f);  // llama.cpp's default: merges then tie-break leftmost
  }
  if (g.Has(kTypesKey)) {
    const std::vector<int64_t> types = g.GetIntArray(kTypesKey);
    CQKV_CHECK(types.size() == n, "{}: {} has {} entries for {} tokens", path, kTypesKey,
               types.size(), n);
    v.types.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      CQKV_CHECK(types[i] >= 0 && types[i] <= static_cast<int64_t>(TokenType::kByte),
                 "{}: {}[{}] = {} is not a token type (0..6)", path, kTypesKey, i, types[i]);
      v.types.push_back(static_cast<TokenType>(types[i]));
    }
  }
  if (spm) {
    // Byte tokens must be "<0xNN>": the encoder falls back to them by that spelling.
    for (size_t i = 0; i < v.types.size(); ++i) {
      CQKV_CHECK(
          v.types[i] != TokenType::kByte || tokenizer_internal::ParseByteToken(v.tokens[i]) >= 0,
          "{}: {}[{}] '{}' is typed byte but is not <0xNN>", path, kTokensKey, i, v.tokens[i]);
    }
  } else {
    CQKV_CHECK(g.Has(kMergesKey), "{}: gpt2 tokenizer without merges: key {} is missing", path,
               kMergesKey);
    v.merges = g.GetStringArray(kMergesKey);
    v.pre = g.GetString("tokenizer.ggml.pre", "");
  }
  // Throws naming the file for an unknown value; llama.cpp refuses those as well.
  const PreTokenizerFamily* family = spm ? nullptr : &FindPreTokenizer(v.pre, path);
  if (family != nullptr) v.ignore_merges = family->ignore_merges;

  // Defaults are llama.cpp's for keys a converter left out.
  v.bos_id = SpecialId(g, "tokenizer.ggml.bos_token_id", spm ? 1 : -1, n);
  v.eos_id = SpecialId(g, "tokenizer.ggml.eos_token_id", spm ? 2 : -1, n);
  v.unk_id = SpecialId(g, "tokenizer.ggml.unknown_token_id", spm ? 0 : -1, n);
  v.add_bos = g.GetBool("tokenizer.ggml.add_bos_token", spm || family->add_bos);
  // llama.cpp honours the space prefix for SentencePiece vocabularies only.
  v.add_space_prefix = spm && g.GetBool("tokenizer.ggml.add_space_prefix", true);
  v.chat_template = g.GetString("tokenizer.chat_template", "");
  return v;
}

Vocab ReadLlama2cVocab(const std::string& path) {
  const std::string bytes = ReadFile(path);
  size_t pos = 0;
  auto read_i32 = [&](const char* what, size_t index) {
    CQKV_CHECK(bytes.size() - pos >= 4,
               "{}: truncated llama2.c tokenizer: {} of token {} at byte {}", path, what, index,
               pos);
    int32_t x;
    std::memcpy(&x, bytes.data() + pos, 4);
    pos += 4;
    return x;
  };
  CQKV_CHECK(bytes.size() >= 4, "{}: truncated llama2.c tokenizer: {} bytes, no header", path,
             bytes.size());
  const int32_t max_len = read_i32("header", 0);
  CQKV_CHECK(max_len > 0, "{}: not a llama2.c tokenizer: max_token_length is {}", path, max_len);

  Vocab v;
  v.model = "llama";
  while (pos < bytes.size()) {
    const size_t i = v.tokens.size();
    const int32_t score_bits = read_i32("score", i);
    float score;
    std::memcpy(&score, &score_bits, 4);
    const int32_t len = read_i32("length", i);
    CQKV_CHECK(len >= 0 && len <= max_len,
               "{}: token {} at byte {} has length {} (max_token_length is {})", path, i, pos - 4,
               len, max_len);
    CQKV_CHECK(bytes.size() - pos >= static_cast<size_t>(len),
               "{}: truncated llama2.c tokenizer: token {} needs {} bytes at byte {}, file has {}",
               path, i, len, pos, bytes.size());
    std::string piece = bytes.substr(pos, len);
    pos += len;

    // The exporter wrote SentencePiece's U+2581 as a plain space; restore it so the same
    // encoder serves GGUF and llama2.c vocabularies.
    std::string restored;
    restored.reserve(piece.size() + 8);
    for (char c : piece) {
      if (c == ' ') {
        restored += "\xE2\x96\x81";
      } else {
        restored.push_back(c);
      }
    }
    v.tokens.push_back(std::move(restored));
    v.scores.push_back(score);
  }
  CQKV_CHECK(v.tokens.size() >= 3,
             "{}: llama2.c tokenizer has {} tokens; ids 0..2 must be "
             "<unk>, <s>, </s>",
             path, v.tokens.size());

  // The exporter wrapped BOS/EOS in newlines for llama2.c's printing; their real pieces are
  // SentencePiece's <s> and </s>.
  if (v.tokens[1] == "\n<s>\n") v.tokens[1] = "<s>";
  if (v.tokens[2] == "\n</s>\n") v.tokens[2] = "</s>";
  v.types.assign(v.tokens.size(), TokenType::kNormal);
  v.types[0] = TokenType::kUnknown;
  v.types[1] = TokenType::kControl;
  v.types[2] = TokenType::kControl;
  for (size_t i = 3; i < v.tokens.size(); ++i) {
    if (tokenizer_internal::ParseByteToken(v.tokens[i]) >= 0) v.types[i] = TokenType::kByte;
  }
  v.unk_id = 0;
  v.bos_id = 1;
  v.eos_id = 2;
  v.add_bos = true;
  v.add_space_prefix = true;
  return v;
}

}  // namespace cqkv
