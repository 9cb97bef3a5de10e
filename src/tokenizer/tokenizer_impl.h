// Internals shared by the tokenizer implementations (not part of the public API): the factory
// functions MakeTokenizer dispatches to and small UTF-8 helpers both encoders need.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace cqkv::tokenizer_internal {

// Both take a vocabulary already checked for consistent array sizes and valid special ids.
std::unique_ptr<Tokenizer> MakeSpmTokenizer(Vocab vocab);
std::unique_ptr<Tokenizer> MakeGpt2Tokenizer(Vocab vocab);

// Length of the UTF-8 sequence introduced by `lead`, judged from its top four bits only, as
// llama.cpp does: stray continuation bytes count as one-byte characters, so invalid UTF-8 is
// split byte by byte instead of being rejected.
inline size_t Utf8Len(char lead) {
  static constexpr uint8_t kLen[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kLen[static_cast<uint8_t>(lead) >> 4];
}

// Appends the UTF-8 encoding of code point `cp` (< 0x110000) to `out`.
void AppendUtf8(uint32_t cp, std::string& out);

// "<0xNN>" -> NN, or -1 when `piece` is not in SentencePiece's byte-token form.
int ParseByteToken(std::string_view piece);

// String -> token id lookup on the encoders' hot path. Open addressing with stored hashes keeps a
// probe to one or two cache lines; std::unordered_map's node chasing took half of the SPM
// encoder's time on whole files. Keys are views: the strings must outlive the map.
class PieceMap {
 public:
  // Sizes the table for `n` keys; call before Insert.
  void Reserve(size_t n);
  // A later Insert of the same key replaces the id (llama.cpp's token_to_id does the same).
  void Insert(std::string_view key, int32_t id) { Insert(key, id, Hash(key)); }
  // Insert of every (key, id) in order, with the slot of a later key prefetched while an earlier
  // one is stored: a vocabulary's keys land in random slots, one cache miss each otherwise.
  void InsertAll(const std::vector<std::pair<std::string_view, int32_t>>& items);
  int32_t Find(std::string_view key) const { return Find(key, Hash(key)); }
  // Find with the key's Hash already known; with Prefetch, lets a caller overlap the cache misses
  // of many lookups (building a 150K-token vocabulary's merge table is one miss per lookup).
  int32_t Find(std::string_view key, uint64_t h) const {
    if (key.size() > max_len_ || slots_.empty()) return -1;
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.id < 0) return -1;
      if (s.hash == h && s.len == key.size() && key.compare(0, s.len, s.data, s.len) == 0) {
        return s.id;
      }
    }
  }
  void Prefetch(uint64_t h) const {
    if (!slots_.empty()) __builtin_prefetch(&slots_[h & mask_]);
  }
  static uint64_t Hash(std::string_view s);
  size_t max_len() const { return max_len_; }
  template <typename F>
  void ForEach(F f) const {
    for (const Slot& s : slots_) {
      if (s.id >= 0) f(std::string_view(s.data, s.len), s.id);
    }
  }

 private:
  struct Slot {
    uint64_t hash = 0;
    const char* data = nullptr;
    uint32_t len = 0;
    int32_t id = -1;  // -1: empty slot
  };
  void Insert(std::string_view key, int32_t id, uint64_t h);
  void Grow(size_t keys);  // rehashes so that `keys` keys keep the load factor <= 1/2

  std::vector<Slot> slots_;
  size_t mask_ = 0;
  size_t count_ = 0;
  size_t max_len_ = 0;
};

}  // namespace cqkv::tokenizer_internal
