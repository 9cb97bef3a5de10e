// SentencePiece-style BPE (the LLaMA-1/2 "llama" vocabulary), reproducing llama.cpp's
// llm_tokenizer_spm token for token: spaces become U+2581, the whole text is one sequence of
// UTF-8 characters, and the adjacent pair whose concatenation is the highest-scoring vocabulary
// piece merges first (leftmost on ties). Characters left outside the vocabulary fall back to
// <0xNN> byte tokens. A heap of candidate pairs keeps this O(n log n) over whole files.

#include <algorithm>
#include <array>
#include <limits>
#include <queue>

#include "tokenizer/tokenizer_impl.h"
#include "util/error.h"

namespace cqkv::tokenizer_internal {
namespace {

constexpr std::string_view kSpaceMark = "\xE2\x96\x81";  // U+2581 LOWER ONE EIGHTH BLOCK

class SpmTokenizer final : public Tokenizer {
 public:
  explicit SpmTokenizer(Vocab vocab) : vocab_(std::move(vocab)) {
    const size_t n = vocab_.tokens.size();
    if (vocab_.scores.empty()) vocab_.scores.assign(n, 0.0f);
    if (vocab_.types.empty()) {
      // Without stored types, SentencePiece's byte pieces are still recognisable by their form.
      vocab_.types.resize(n);
      for (size_t i = 0; i < n; ++i) {
        vocab_.types[i] =
            ParseByteToken(vocab_.tokens[i]) >= 0 ? TokenType::kByte : TokenType::kNormal;
      }
    }
    byte_ids_.fill(-1);
    mergeable_.Reserve(n);
    pieces_.resize(n);
    for (size_t i = 0; i < n; ++i) {
      const std::string& text = vocab_.tokens[i];
      const auto id = static_cast<int32_t>(i);
      switch (vocab_.types[i]) {
        case TokenType::kByte: {
          const int b = ParseByteToken(text);
          CQKV_CHECK(b >= 0, "vocabulary: byte token {} has text '{}', not <0xNN>", i, text);
          if (byte_ids_[b] < 0) byte_ids_[b] = id;
          pieces_[i] = std::string(1, static_cast<char>(b));
          break;
        }
        case TokenType::kControl:
          // Markers such as <s> are never produced from raw text nor printed as text.
          break;
        case TokenType::kUnknown:
          pieces_[i] = text;
          break;
        case TokenType::kUserDefined:
          pieces_[i] = text;
          mergeable_.Insert(text, id);
          break;
        default:
          pieces_[i] = Unescape(text);
          // Later duplicates win, as in llama.cpp's token_to_id map.
          mergeable_.Insert(text, id);
          break;
      }
    }
    InitBarriers();
    special_ = SpecialTokenSplitter(vocab_);
  }

  // mergeable_ and special_ point into this object's vocab_, so a copy would dangle.
  SpmTokenizer(const SpmTokenizer&) = delete;
  SpmTokenizer& operator=(const SpmTokenizer&) = delete;

  void EncodeText(std::string_view text, bool after_special,
                  std::vector<int32_t>& out) const override {
    // SentencePiece's space prefix opens the input and every piece after a special token.
    std::string escaped;
    escaped.reserve(text.size() + text.size() / 4 + 3);
    if (vocab_.add_space_prefix && after_special) escaped += kSpaceMark;
    for (char c : text) {
      if (c == ' ') {
        escaped += kSpaceMark;
      } else {
        escaped.push_back(c);
      }
    }
    CQKV_CHECK(escaped.size() < std::numeric_limits<int32_t>::max(),
               "tokenizer: input of {} bytes is too long", text.size());
    Tokenize(escaped, out);
  }

  const Vocab& vocab() const override { return vocab_; }

 private:
  // A run of the input; merged symbols keep their start, absorbed ones get n == 0.
  struct Symbol {
    int32_t prev;
    int32_t next;
    uint32_t start;
    uint32_t n;
  };
  struct Bigram {
    float score;
    int32_t left;
    int32_t right;
    uint32_t size;  // detects stale entries: the pair's length when it was queued
  };
  struct Lower {
    // Highest score on top; on ties the leftmost pair, matching llama.cpp's comparator.
    bool operator()(const Bigram& a, const Bigram& b) const {
      return a.score < b.score || (a.score == b.score && a.left > b.left);
    }
  };
  using Queue = std::priority_queue<Bigram, std::vector<Bigram>, Lower>;

  static std::string Unescape(const std::string& text) {
    std::string out;
    out.reserve(text.size());
    for (size_t i = 0; i < text.size();) {
      if (text.compare(i, kSpaceMark.size(), kSpaceMark) == 0) {
        out.push_back(' ');
        i += kSpaceMark.size();
      } else {
        out.push_back(text[i++]);
      }
    }
    return out;
  }

  int32_t Lookup(std::string_view s) const { return mergeable_.Find(s); }

  void InitBarriers() {
    std::array<bool, 128> in_piece{};
    mergeable_.ForEach([&](std::string_view text, int32_t) {
      if (text.size() < 2) return;
      for (char c : text) {
        if (static_cast<uint8_t>(c) < 128) in_piece[static_cast<uint8_t>(c)] = true;
      }
    });
    for (int b = 0; b < 128; ++b) barrier_[b] = !in_piece[b];
  }

  // Buffers reused across the segments of one Encode call.
  struct Work {
    std::vector<Symbol> symbols;
    Queue queue;
  };

  void TryAddBigram(std::string_view text, Work& w, int32_t left, int32_t right) const {
    if (left < 0 || right < 0) return;
    const uint32_t size = w.symbols[left].n + w.symbols[right].n;
    const int32_t id = Lookup(text.substr(w.symbols[left].start, size));
    if (id < 0) return;
    w.queue.push(Bigram{vocab_.scores[id], left, right, size});
  }

  // Cuts the text after every barrier character and tokenizes the pieces one by one. Exact, not
  // an approximation: a barrier never joins a pair, so no merge can cross it, and the
  // highest-score-then-leftmost order restricted to one piece is the order the whole-text run
  // would apply there. Cuts follow the same character stepping as TokenizeSegment, so a stray
  // UTF-8 lead byte that swallows a newline splits exactly as it would unsegmented. Small pieces
  // keep the heap in cache (about 5x faster on wikitext).
  void Tokenize(std::string_view text, std::vector<int32_t>& out) const {
    Work w;
    size_t begin = 0;
    for (size_t i = 0; i < text.size();) {
      const size_t len = std::min(text.size() - i, Utf8Len(text[i]));
      const bool barrier = len == 1 && barrier_[static_cast<uint8_t>(text[i])];
      i += len;
      if (barrier) {
        TokenizeSegment(text.substr(begin, i - begin), w, out);
        begin = i;
      }
    }
    if (begin < text.size()) TokenizeSegment(text.substr(begin), w, out);
  }

  void TokenizeSegment(std::string_view text, Work& w, std::vector<int32_t>& out) const {
    std::vector<Symbol>& symbols = w.symbols;
    symbols.clear();
    for (size_t offs = 0; offs < text.size();) {
      const size_t len = std::min(text.size() - offs, Utf8Len(text[offs]));
      const auto index = static_cast<int32_t>(symbols.size());
      symbols.push_back(
          Symbol{index - 1, index + 1, static_cast<uint32_t>(offs), static_cast<uint32_t>(len)});
      offs += len;
    }
    symbols.back().next = -1;

    for (int32_t i = 1; i < static_cast<int32_t>(symbols.size()); ++i) {
      TryAddBigram(text, w, i - 1, i);
    }
    while (!w.queue.empty()) {
      const Bigram b = w.queue.top();
      w.queue.pop();
      Symbol& left = symbols[b.left];
      Symbol& right = symbols[b.right];
      // Either side already merged elsewhere: the entry is stale.
      if (left.n == 0 || right.n == 0 || left.n + right.n != b.size) continue;
      left.n += right.n;
      right.n = 0;
      left.next = right.next;
      if (right.next >= 0) symbols[right.next].prev = b.left;
      TryAddBigram(text, w, left.prev, b.left);
      TryAddBigram(text, w, b.left, left.next);
    }

    for (int32_t i = 0; i != -1; i = symbols[i].next) {
      const std::string_view piece = text.substr(symbols[i].start, symbols[i].n);
      const int32_t id = Lookup(piece);
      if (id >= 0) {
        out.push_back(id);
        continue;
      }
      // Only single characters can miss the vocabulary (every merge result is a piece).
      for (char c : piece) {
        const int32_t byte_id = byte_ids_[static_cast<uint8_t>(c)];
        if (byte_id >= 0) {
          out.push_back(byte_id);
        } else {
          const int32_t single = Lookup(std::string_view(&c, 1));
          if (single >= 0) {
            out.push_back(single);
          } else if (vocab_.unk_id >= 0) {
            out.push_back(vocab_.unk_id);
          }
        }
      }
    }
  }

  Vocab vocab_;
  // Pieces the encoder may produce from raw text; views into vocab_.tokens, which never changes.
  PieceMap mergeable_;
  std::array<int32_t, 256> byte_ids_;
  // ASCII bytes that occur in no multi-character piece (e.g. '\n' in LLaMA-2), so they can
  // never take part in a merge.
  std::array<bool, 256> barrier_{};
};

}  // namespace

std::unique_ptr<Tokenizer> MakeSpmTokenizer(Vocab vocab) {
  return std::make_unique<SpmTokenizer>(std::move(vocab));
}

}  // namespace cqkv::tokenizer_internal
