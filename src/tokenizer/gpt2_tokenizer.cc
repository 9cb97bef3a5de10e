// GPT-2 byte-level BPE (the "gpt2" vocabulary, also Hugging Face ByteLevel BPE): the text is cut
// into words by the GPT-2 regex (PCRE2, Unicode classes), each word's bytes are spelled in GPT-2's
// printable byte alphabet, and merges apply lowest rank first (leftmost on ties), as llama.cpp's
// llm_tokenizer_bpe does. Words are independent, so merges never cross a word boundary.

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <array>
#include <queue>
#include <unordered_map>

#include "tokenizer/tokenizer_impl.h"
#include "util/error.h"

namespace cqkv::tokenizer_internal {
namespace {

// The pre-tokenizer regex of GPT-2 (and of llama.cpp's "gpt-2" pre-type):
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// with \s spelled out as Unicode White_Space, which is what GPT-2's Python regex and llama.cpp's
// tables use; PCRE2's own \s also matches U+180E. The trailing \s+ catches a final whitespace
// run that \s+(?!\S) leaves one character short of.
std::string Gpt2Pattern() {
  const std::string ws =
      R"(\t-\r\x{20}\x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000})";
  return R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^)" + ws + R"(\p{L}\p{N}]+|[)" + ws +
         "]+(?![^" + ws + "])|[" + ws + "]+";
}

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

// One compiled pre-tokenizer pattern. pcre2_code is immutable after JIT compilation and safe to
// share between threads; match data is per call.
class Regex {
 public:
  explicit Regex(std::string_view pattern) {
    int err = 0;
    PCRE2_SIZE err_offset = 0;
    // UCP makes \s, \p{L} etc. Unicode-aware; MATCH_INVALID_UTF lets arbitrary bytes through
    // (they end up in the gaps between matches, which Split keeps as words).
    code_ =
        pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                      PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &err_offset, nullptr);
    if (code_ == nullptr) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof(msg));
      Fail("tokenizer: pre-tokenizer regex does not compile at offset {}: {}", err_offset,
           reinterpret_cast<const char*>(msg));
    }
    // Without JIT the interpreter still works, only slower.
    pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);
  }
  ~Regex() { pcre2_code_free(code_); }
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Appends to `out` the pieces of text[begin, end): every match, and every gap between matches
  // as a piece of its own, so no byte is ever dropped.
  void Split(std::string_view text, size_t begin, size_t end, pcre2_match_data* md,
             std::vector<std::pair<size_t, size_t>>& out) const {
    const auto subject = reinterpret_cast<PCRE2_SPTR>(text.data() + begin);
    const size_t len = end - begin;
    size_t offset = 0;
    while (offset < len) {
      const int rc = pcre2_match(code_, subject, len, offset, 0, md, nullptr);
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(rc, msg, sizeof(msg));
        Fail("tokenizer: pre-tokenizer regex failed at byte {}: {}", begin + offset,
             reinterpret_cast<const char*>(msg));
      }
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
      if (ov[0] > offset) out.emplace_back(begin + offset, ov[0] - offset);
      if (ov[1] == ov[0]) {  // empty match: step over one character to make progress
        const size_t step = std::min(len - ov[0], Utf8Len(text[begin + ov[0]]));
        out.emplace_back(begin + ov[0], step);
        offset = ov[0] + step;
        continue;
      }
      out.emplace_back(begin + ov[0], ov[1] - ov[0]);
      offset = ov[1];
    }
    if (offset < len) out.emplace_back(begin + offset, len - offset);
  }

 private:
  pcre2_code* code_ = nullptr;
};

class Gpt2Tokenizer final : public Tokenizer {
 public:
  explicit Gpt2Tokenizer(Vocab vocab) : vocab_(std::move(vocab)) {
    const size_t n = vocab_.tokens.size();
    if (vocab_.types.empty()) vocab_.types.assign(n, TokenType::kNormal);
    std::unordered_map<std::string_view, int32_t> token_to_id;
    token_to_id.reserve(n);
    for (size_t i = 0; i < n; ++i) token_to_id[vocab_.tokens[i]] = static_cast<int32_t>(i);
    auto find = [&](std::string_view s) {
      const auto it = token_to_id.find(s);
      return it == token_to_id.end() ? -1 : it->second;
    };

    const std::array<uint32_t, 256> byte_cp = ByteToCodepoint();
    std::unordered_map<uint32_t, uint8_t> cp_to_byte;
    for (int b = 0; b < 256; ++b) {
      std::string spelled;
      AppendUtf8(byte_cp[b], spelled);
      byte_ids_[b] = find(spelled);
      cp_to_byte[byte_cp[b]] = static_cast<uint8_t>(b);
    }

    merges_.reserve(vocab_.merges.size());
    for (size_t rank = 0; rank < vocab_.merges.size(); ++rank) {
      const std::string& m = vocab_.merges[rank];
      // Search from 1 so that a left part which is itself a space still splits correctly.
      const size_t sp = m.find(' ', 1);
      CQKV_CHECK(sp != std::string::npos, "vocabulary: merge {} '{}' is not 'left right'", rank, m);
      const int32_t left = find(std::string_view(m).substr(0, sp));
      const int32_t right = find(std::string_view(m).substr(sp + 1));
      const int32_t merged = find(m.substr(0, sp) + m.substr(sp + 1));
      // A merge naming pieces outside the vocabulary can never fire; skip it.
      if (left < 0 || right < 0 || merged < 0) continue;
      // The first (lowest-ranked) occurrence of a pair wins.
      merges_.emplace(PairKey(left, right), Merge{static_cast<int32_t>(rank), merged});
    }

    pieces_.resize(n);
    for (size_t i = 0; i < n; ++i) {
      const std::string& text = vocab_.tokens[i];
      switch (vocab_.types[i]) {
        case TokenType::kNormal:
        case TokenType::kUndefined:
          for (size_t k = 0; k < text.size();) {
            const uint32_t cp = NextCodepoint(text, k);
            const auto it = cp_to_byte.find(cp);
            if (it != cp_to_byte.end()) {
              pieces_[i].push_back(static_cast<char>(it->second));
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
    patterns_.push_back(std::make_unique<Regex>(Gpt2Pattern()));
  }

  std::vector<int32_t> Encode(std::string_view text, bool add_bos) const override {
    std::vector<int32_t> out;
    if (add_bos && vocab_.bos_id >= 0) out.push_back(vocab_.bos_id);
    if (text.empty()) return out;
    std::string prefixed;
    if (vocab_.add_space_prefix && text[0] != ' ') {
      // Hugging Face ByteLevel(add_prefix_space=true) semantics.
      prefixed.reserve(text.size() + 1);
      prefixed.push_back(' ');
      prefixed.append(text);
      text = prefixed;
    }

    // Each pattern re-splits the pieces of the previous one, as llama.cpp applies its lists.
    std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> md(
        pcre2_match_data_create(1, nullptr), &pcre2_match_data_free);
    CQKV_CHECK(md != nullptr, "tokenizer: out of memory for regex match data");
    std::vector<std::pair<size_t, size_t>> words{{0, text.size()}}, next;
    for (const auto& re : patterns_) {
      next.clear();
      for (const auto& [begin, len] : words) re->Split(text, begin, begin + len, md.get(), next);
      words.swap(next);
    }

    Work work;
    for (const auto& [begin, len] : words) EncodeWord(text.substr(begin, len), work, out);
    return out;
  }

  const Vocab& vocab() const override { return vocab_; }

 private:
  struct Merge {
    int32_t rank;
    int32_t id;
  };
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

  static uint64_t PairKey(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
           static_cast<uint32_t>(right);
  }

  void TryAddBigram(Work& w, int32_t left, int32_t right) const {
    if (left < 0 || right < 0) return;
    const int32_t l = w.symbols[left].id, r = w.symbols[right].id;
    if (l < 0 || r < 0) return;
    const auto it = merges_.find(PairKey(l, r));
    if (it == merges_.end()) return;
    w.queue.push(Bigram{it->second.rank, left, right, l, r, it->second.id});
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
  std::unordered_map<uint64_t, Merge> merges_;
  std::vector<std::unique_ptr<Regex>> patterns_;
};

}  // namespace

std::unique_ptr<Tokenizer> MakeGpt2Tokenizer(Vocab vocab) {
  return std::make_unique<Gpt2Tokenizer>(std::move(vocab));
}

}  // namespace cqkv::tokenizer_internal
