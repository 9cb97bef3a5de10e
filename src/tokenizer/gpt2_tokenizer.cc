// Byte-level BPE (the "gpt2" vocabulary model: GPT-2, Llama-3, Qwen2, SmolLM, ... and Hugging Face
// ByteLevel BPE): the text is cut into words by its pre-tokenizer family's regexes (PCRE2, Unicode
// classes), each word's bytes are spelled in GPT-2's printable byte alphabet, and merges apply
// lowest rank first (leftmost on ties), as llama.cpp's llm_tokenizer_bpe does. Words are
// independent, so merges never cross a word boundary.

#include <array>
#include <queue>
#include <unordered_map>

#include "tokenizer/pretokenizer.h"
#include "tokenizer/regex_split.h"
#include "tokenizer/tokenizer_impl.h"
#include "util/error.h"

namespace cqkv::tokenizer_internal {
namespace {

// GPT-2's byte -> code point table: printable Latin-1 bytes stand for themselves, the rest are
// moved to U+0100 upwards in byte order, so every byte has a visible, non-space spelling.
std::array<uint32_t, 256> ByteToCodepoint() {
  std::array<uint32_t, 256> cp{};
  uint32_t next = 256;
  for (uint32_t b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
    cp[b] = printable ? b : next++;
  }
  return cp;
}

// Decodes one code point at `i` (advancing it); malformed sequences yield the lead byte as a
// code point >= 0x110000 so callers can pass it through unchanged.
uint32_t NextCodepoint(std::string_view s, size_t& i) {
  const auto lead = static_cast<uint8_t>(s[i]);
  const size_t len = Utf8Len(s[i]);
  if (len == 1 || i + len > s.size()) {
    ++i;
    return lead < 0x80 ? lead : 0x110000u + lead;
  }
  uint32_t cp = lead & (0xFF >> (len + 1));
  for (size_t k = 1; k < len; ++k) {
    const auto c = static_cast<uint8_t>(s[i + k]);
    if ((c & 0xC0) != 0x80) {
      ++i;
      return 0x110000u + lead;
    }
    cp = (cp << 6) | (c & 0x3F);
  }
  i += len;
  return cp;
}

struct Merge {
  int32_t rank;
  int32_t id;  // the merged token
};

uint64_t PairKey(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

// (left id, right id) -> Merge by open addressing over the 64-bit pair key: 16-byte slots, one
// cache line per probe, on the encoder's innermost lookup.
class MergeTable {
 public:
  static constexpr uint64_t kNone = ~uint64_t{0};  // no valid pair has this key

  void Reserve(size_t n) {
    size_t size = 16;
    while (size < 2 * n) size *= 2;
    slots_.assign(size, Slot{kNone, Merge{}});
    mask_ = size - 1;
  }
  void Prefetch(uint64_t key) const { __builtin_prefetch(&slots_[Mix(key) & mask_]); }
  // Keeps the first value stored under a key. Reserve must have room for every insert.
  void InsertFirst(uint64_t key, Merge m) {
    for (size_t i = Mix(key) & mask_;; i = (i + 1) & mask_) {
      if (slots_[i].key == key) return;
      if (slots_[i].key == kNone) {
        slots_[i] = Slot{key, m};
        return;
      }
    }
  }
  const Merge* Find(uint64_t key) const {
    for (size_t i = Mix(key) & mask_;; i = (i + 1) & mask_) {
      if (slots_[i].key == key) return &slots_[i].merge;
      if (slots_[i].key == kNone) return nullptr;
    }
  }

 private:
  struct Slot {
    uint64_t key;
    Merge merge;
  };
  static uint64_t Mix(uint64_t k) {
    k ^= k >> 33;
    k *= 0xFF51AFD7ED558CCDull;
    return k ^ (k >> 33);
  }
  std::vector<Slot> slots_;
  size_t mask_ = 0;
};

class Gpt2Tokenizer final : public Tokenizer {
 public:
  explicit Gpt2Tokenizer(Vocab vocab) : vocab_(std::move(vocab)) {
    const size_t n = vocab_.tokens.size();
    if (vocab_.types.empty()) vocab_.types.assign(n, TokenType::kNormal);
    const PreTokenizerFamily& family = FindPreTokenizer(vocab_.pre, "vocabulary");
    std::vector<std::pair<std::string_view, int32_t>> items;
    items.reserve(n);
    for (size_t i = 0; i < n; ++i) items.emplace_back(vocab_.tokens[i], static_cast<int32_t>(i));
    PieceMap token_to_id;
    token_to_id.Reserve(n);
    token_to_id.InsertAll(items);
    auto find = [&](std::string_view s) { return token_to_id.Find(s); };

    const std::array<uint32_t, 256> byte_cp = ByteToCodepoint();
    std::array<int16_t, 512> cp_to_byte;  // the alphabet's code points are all below 512
    cp_to_byte.fill(-1);
    for (int b = 0; b < 256; ++b) {
      std::string spelled;
      AppendUtf8(byte_cp[b], spelled);
      byte_ids_[b] = find(spelled);
      cp_to_byte[byte_cp[b]] = static_cast<int16_t>(b);
    }
    BuildMerges(token_to_id);

    pieces_.resize(n);
    for (size_t i = 0; i < n; ++i) {
      const std::string& text = vocab_.tokens[i];
      switch (vocab_.types[i]) {
        case TokenType::kNormal:
        case TokenType::kUndefined:
          for (size_t k = 0; k < text.size();) {
            const uint32_t cp = NextCodepoint(text, k);
            if (cp < cp_to_byte.size() && cp_to_byte[cp] >= 0) {
              pieces_[i].push_back(static_cast<char>(cp_to_byte[cp]));
            } else if (cp >= 0x110000u) {
              pieces_[i].push_back(static_cast<char>(cp - 0x110000u));
            } else {
              AppendUtf8(cp, pieces_[i]);  // outside the byte alphabet: keep as written
            }
          }
          break;
        case TokenType::kUserDefined:
        case TokenType::kUnknown:
          pieces_[i] = text;  // added tokens are stored as plain text, not byte-spelled
          break;
        default:  // control, unused and byte tokens print nothing
          break;
      }
    }
    for (std::string_view p : family.patterns) {
      patterns_.push_back(std::make_unique<RegexSplitter>(p));
    }
    if (vocab_.ignore_merges) {
      items.clear();
      for (size_t i = 0; i < n; ++i) {
        const TokenType t = vocab_.types[i];
        if (t == TokenType::kNormal || t == TokenType::kUndefined) {
          items.emplace_back(pieces_[i], static_cast<int32_t>(i));
        }
      }
      whole_.Reserve(items.size());
      whole_.InsertAll(items);
    }
    special_ = SpecialTokenSplitter(vocab_);
  }

  // special_ and whole_ point into this object's vocab_ and pieces_, so a copy would dangle.
  Gpt2Tokenizer(const Gpt2Tokenizer&) = delete;
  Gpt2Tokenizer& operator=(const Gpt2Tokenizer&) = delete;

  void EncodeText(std::string_view text, bool /*after_special*/,
                  std::vector<int32_t>& out) const override {
    std::string prefixed;
    if (vocab_.add_space_prefix && text[0] != ' ') {
      // Hugging Face ByteLevel(add_prefix_space=true): every piece between added tokens.
      prefixed.reserve(text.size() + 1);
      prefixed.push_back(' ');
      prefixed.append(text);
      text = prefixed;
    }
    Work work;
    // Words repeat (wikitext: ~10 uses per distinct word), and a word's tokens depend on the word
    // alone, so each distinct word is merged once per call: its tokens are copied from the first
    // time after that.
    std::unordered_map<std::string_view, std::pair<size_t, size_t>> seen;  // word -> out range
    for (const auto& [begin, len] : SplitAll(text, patterns_)) {
      const std::string_view word = text.substr(begin, len);
      const int32_t whole = vocab_.ignore_merges ? whole_.Find(word) : -1;
      if (whole >= 0) {
        out.push_back(whole);
        continue;
      }
      if (word.size() == 1) {
        EncodeWord(word, work, out);
        continue;
      }
      const auto [it, fresh] = seen.try_emplace(word, out.size(), 0);
      if (fresh) {
        EncodeWord(word, work, out);
        it->second.second = out.size() - it->second.first;
      } else {
        const auto [at, count] = it->second;
        for (size_t k = 0; k < count; ++k) {
          const int32_t id = out[at + k];  // by value: push_back may reallocate
          out.push_back(id);
        }
      }
    }
  }

  const Vocab& vocab() const override { return vocab_; }

 private:
  struct Symbol {
    int32_t id;  // -1: byte missing from the vocabulary (never merges)
    int32_t prev;
    int32_t next;
    bool alive;
  };
  struct Bigram {
    int32_t rank;
    int32_t left;
    int32_t right;
    int32_t left_id;  // stale detection: both sides must still be these tokens
    int32_t right_id;
    int32_t merged;
  };
  struct Later {
    bool operator()(const Bigram& a, const Bigram& b) const {
      return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
    }
  };
  // Buffers reused across the words of one Encode call.
  struct Work {
    std::vector<Symbol> symbols;
    std::priority_queue<Bigram, std::vector<Bigram>, Later> queue;
  };

  // Resolves each "left right" merge to token ids. Lookups go in batches whose cache misses
  // overlap (prefetch first, probe after): one miss per lookup made this most of the load time
  // of 128K-150K vocabularies with 280K-300K merges.
  void BuildMerges(const PieceMap& token_to_id) {
    const size_t nm = vocab_.merges.size();
    merges_.Reserve(nm);
    constexpr size_t kBatch = 32;
    struct Pending {
      std::string_view left, right;
      std::string joined;
      uint64_t hl, hr, hj;
      uint64_t key;
      int32_t merged;
    };
    std::array<Pending, kBatch> batch;
    for (size_t base = 0; base < nm; base += kBatch) {
      const size_t count = std::min(kBatch, nm - base);
      for (size_t k = 0; k < count; ++k) {
        const std::string_view m = vocab_.merges[base + k];
        // Search from 1 so that a left part which is itself a space still splits correctly.
        const size_t sp = m.find(' ', 1);
        CQKV_CHECK(sp != std::string::npos, "vocabulary: merge {} '{}' is not 'left right'",
                   base + k, m);
        Pending& p = batch[k];
        p.left = m.substr(0, sp);
        p.right = m.substr(sp + 1);
        p.joined.assign(p.left).append(p.right);
        p.hl = PieceMap::Hash(p.left);
        p.hr = PieceMap::Hash(p.right);
        p.hj = PieceMap::Hash(p.joined);
        token_to_id.Prefetch(p.hl);
        token_to_id.Prefetch(p.hr);
        token_to_id.Prefetch(p.hj);
      }
      for (size_t k = 0; k < count; ++k) {
        Pending& p = batch[k];
        const int32_t left = token_to_id.Find(p.left, p.hl);
        const int32_t right = token_to_id.Find(p.right, p.hr);
        p.merged = token_to_id.Find(p.joined, p.hj);
        // A merge naming pieces outside the vocabulary can never fire; skip it.
        p.key = left < 0 || right < 0 || p.merged < 0 ? MergeTable::kNone : PairKey(left, right);
        if (p.key != MergeTable::kNone) merges_.Prefetch(p.key);
      }
      for (size_t k = 0; k < count; ++k) {
        const Pending& p = batch[k];
        // The first (lowest-ranked) occurrence of a pair wins.
        if (p.key != MergeTable::kNone) {
          merges_.InsertFirst(p.key, Merge{static_cast<int32_t>(base + k), p.merged});
        }
      }
    }
  }

  void TryAddBigram(Work& w, int32_t left, int32_t right) const {
    if (left < 0 || right < 0) return;
    const int32_t l = w.symbols[left].id, r = w.symbols[right].id;
    if (l < 0 || r < 0) return;
    const Merge* m = merges_.Find(PairKey(l, r));
    if (m == nullptr) return;
    w.queue.push(Bigram{m->rank, left, right, l, r, m->id});
  }

  void EncodeWord(std::string_view word, Work& w, std::vector<int32_t>& out) const {
    if (word.size() == 1) {
      Emit(byte_ids_[static_cast<uint8_t>(word[0])], out);
      return;
    }
    w.symbols.clear();
    const auto n = static_cast<int32_t>(word.size());
    for (int32_t i = 0; i < n; ++i) {
      w.symbols.push_back(
          Symbol{byte_ids_[static_cast<uint8_t>(word[i])], i - 1, i + 1 < n ? i + 1 : -1, true});
    }
    for (int32_t i = 1; i < n; ++i) TryAddBigram(w, i - 1, i);
    while (!w.queue.empty()) {
      const Bigram b = w.queue.top();
      w.queue.pop();
      Symbol& left = w.symbols[b.left];
      Symbol& right = w.symbols[b.right];
      if (!left.alive || !right.alive || left.id != b.left_id || right.id != b.right_id) continue;
      left.id = b.merged;
      right.alive = false;
      left.next = right.next;
      if (right.next >= 0) w.symbols[right.next].prev = b.left;
      TryAddBigram(w, left.prev, b.left);
      TryAddBigram(w, b.left, left.next);
    }
    for (int32_t i = 0; i != -1; i = w.symbols[i].next) Emit(w.symbols[i].id, out);
  }

  void Emit(int32_t id, std::vector<int32_t>& out) const {
    if (id >= 0) {
      out.push_back(id);
    } else if (vocab_.unk_id >= 0) {
      out.push_back(vocab_.unk_id);
    }
  }

  Vocab vocab_;
  std::array<int32_t, 256> byte_ids_;
  MergeTable merges_;
  std::vector<std::unique_ptr<RegexSplitter>> patterns_;
  PieceMap whole_;  // byte text -> id of ordinary tokens, for ignore_merges
};

}  // namespace

std::unique_ptr<Tokenizer> MakeGpt2Tokenizer(Vocab vocab) {
  return std::make_unique<Gpt2Tokenizer>(std::move(vocab));
}

}  // namespace cqkv::tokenizer_internal
