// MakeTokenizer: validates a Vocab once so that the encoders can index it without checks.

#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <cstring>

#include "tokenizer/detokenize.h"
#include "tokenizer/tokenizer_impl.h"
#include "util/error.h"

namespace cqkv {
namespace tokenizer_internal {

void AppendUtf8(uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

int ParseByteToken(std::string_view piece) {
  if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>') return -1;
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  const int hi = hex(piece[3]), lo = hex(piece[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

uint64_t PieceMap::Hash(std::string_view s) {
  // 8 bytes per multiply-xorshift round: pieces are short, so this beats byte-wise hashes.
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (s.size() * 0xFF51AFD7ED558CCDull);
  size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    uint64_t chunk;
    std::memcpy(&chunk, s.data() + i, 8);
    h = (h ^ chunk) * 0xBF58476D1CE4E5B9ull;
    h ^= h >> 29;
  }
  if (i < s.size()) {
    uint64_t chunk = 0;
    std::memcpy(&chunk, s.data() + i, s.size() - i);
    h = (h ^ chunk) * 0xBF58476D1CE4E5B9ull;
  }
  h ^= h >> 31;
  h *= 0x94D049BB133111EBull;
  return h ^ (h >> 32);
}

void PieceMap::Reserve(size_t n) {
  size_t size = 16;
  while (size < 2 * n) size *= 2;  // load factor <= 1/2 keeps probe runs short
  slots_.assign(size, Slot{});
  mask_ = size - 1;
  count_ = 0;
}

void PieceMap::Grow(size_t keys) {
  if (2 * keys <= slots_.size()) return;
  std::vector<Slot> old = std::move(slots_);
  Reserve(std::max(keys, old.size()));
  for (const Slot& s : old) {
    if (s.id >= 0) Insert(std::string_view(s.data, s.len), s.id, s.hash);
  }
}

void PieceMap::InsertAll(const std::vector<std::pair<std::string_view, int32_t>>& items) {
  Grow(count_ + items.size());
  constexpr size_t kAhead = 16;
  std::vector<uint64_t> hashes(items.size());
  for (size_t i = 0; i < items.size(); ++i) hashes[i] = Hash(items[i].first);
  for (size_t i = 0; i < items.size(); ++i) {
    if (i + kAhead < items.size()) Prefetch(hashes[i + kAhead]);
    Insert(items[i].first, items[i].second, hashes[i]);
  }
}

void PieceMap::Insert(std::string_view key, int32_t id, uint64_t h) {
  Grow(count_ + 1);
  for (size_t i = h & mask_;; i = (i + 1) & mask_) {
    Slot& s = slots_[i];
    if (s.id < 0) {
      s = Slot{h, key.data(), static_cast<uint32_t>(key.size()), id};
      ++count_;
      max_len_ = std::max(max_len_, key.size());
      return;
    }
    if (s.hash == h && std::string_view(s.data, s.len) == key) {
      s.id = id;
      return;
    }
  }
}

}  // namespace tokenizer_internal

namespace {

void CheckSpecialId(const Vocab& v, int32_t id, const char* what) {
  CQKV_CHECK(id >= -1 && id < static_cast<int64_t>(v.tokens.size()),
             "vocabulary: {} id {} is outside the {} tokens", what, id, v.tokens.size());
}

}  // namespace

std::vector<int32_t> Tokenizer::Encode(std::string_view text, const EncodeOptions& options) const {
  std::vector<int32_t> out;
  if (options.add_bos && bos() >= 0) out.push_back(bos());
  bool after_special = true;
  for (const tokenizer_internal::Fragment& f : special_.Partition(text, options.parse_special)) {
    if (f.token >= 0) {
      out.push_back(f.token);
      after_special = true;
    } else {
      EncodeText(text.substr(f.begin, f.len), after_special, out);
      after_special = false;
    }
  }
  return out;
}

std::string Tokenizer::Decode(int32_t token) const {
  CQKV_CHECK(token >= 0 && token < static_cast<int64_t>(pieces_.size()),
             "tokenizer: token id {} is outside the vocabulary of {}", token, pieces_.size());
  return pieces_[token];
}

std::unique_ptr<Tokenizer> MakeTokenizer(Vocab vocab) {
  const size_t n = vocab.tokens.size();
  CQKV_CHECK(n > 0, "vocabulary ({}) has no tokens", vocab.model);
  CQKV_CHECK(vocab.scores.empty() || vocab.scores.size() == n,
             "vocabulary: {} scores for {} tokens", vocab.scores.size(), n);
  CQKV_CHECK(vocab.types.empty() || vocab.types.size() == n,
             "vocabulary: {} token types for {} tokens", vocab.types.size(), n);
  CheckSpecialId(vocab, vocab.bos_id, "BOS");
  CheckSpecialId(vocab, vocab.eos_id, "EOS");
  CheckSpecialId(vocab, vocab.unk_id, "unknown-token");
  if (vocab.model == "llama") return tokenizer_internal::MakeSpmTokenizer(std::move(vocab));
  if (vocab.model == "gpt2") return tokenizer_internal::MakeGpt2Tokenizer(std::move(vocab));
  Fail("unsupported tokenizer model '{}' (supported: llama, gpt2)", vocab.model);
}

std::string Detokenize(const Tokenizer& tokenizer, std::span<const int32_t> ids) {
  const Vocab& v = tokenizer.vocab();
  bool strip_space = v.model == "llama" && v.add_space_prefix;
  std::string out;
  for (int32_t id : ids) {
    std::string piece = tokenizer.Decode(id);
    if (piece.empty()) continue;  // control tokens: BOS before the text must not stop stripping
    if (strip_space && piece[0] == ' ') piece.erase(0, 1);
    strip_space = false;
    out += piece;
  }
  return out;
}

}  // namespace cqkv
