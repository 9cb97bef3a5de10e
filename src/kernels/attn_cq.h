// Decode-time partial attention computed directly on coupled-quantization codes: key scores are
// sums of per-group lookup tables (query . centroid), values are per-group histograms of softmax
// weight over centroid indices, reduced against the centroids once per token range.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>

#include "kernels/attn_dense.h"

namespace cqkv {

// The codes and centroid tables of one KV head of one layer.
struct CqHeadView {
  // Packed code streams: the b-bit code of (token t, group g) is bits [(t*n_groups + g) * b, +b)
  // little-endian, with 4 readable bytes past the end when b is not 4 or 8 (ReadCqCode's word
  // loads). Used when k_pages is null.
  const uint8_t* k_codes = nullptr;
  const uint8_t* v_codes = nullptr;
  // Paged codes (kv/cq_cache.cc): when set, page i holds tokens [i * page_tokens,
  // (i + 1) * page_tokens) as a stream of its own in the layout above, token t at page-local
  // index t - i * page_tokens (4 readable bytes past each page's codes when b is not 4 or 8).
  // Only the pages of the attended range are read. page_tokens must be a positive multiple of
  // 256 (CqAttend checks).
  const uint8_t* const* k_pages = nullptr;
  const uint8_t* const* v_pages = nullptr;
  int64_t page_tokens = 0;
  int64_t n_groups = 0;  // groups per token over all KV heads
  int g0 = 0;            // first group of this head; the head owns [g0, g0 + groups)
  int groups = 0;        // head_dim / c
  int c = 0;
  int bits = 0;
  const float* k_table = nullptr;  // (groups, c, 2^b) channel-major: this head's groups
  const float* v_table = nullptr;  // (groups, c, 2^b)
};

// Replaces table-lookup key scoring (pre-RoPE keys, whose rotation depends on the position):
// writes the scaled scores of tokens [t0, t0 + n) for every head, (heads, n) row-major.
using CqScoreFn = std::function<void(int64_t t0, int64_t n, float* scores)>;
// The same in the lookup path's own layout, so a scorer that produces it directly (fast-scan keys)
// skips the (heads, n) hand-over and its transposition: score of token t0 + i for head h at
// lanes[i * hp + h], hp = CqLanes(heads); lanes h >= heads must be written as 0. lanes has room
// for n rounded up to a multiple of 64 plus 64 rows (scratch for whole-block writers).
using CqLaneScoreFn = std::function<void(int64_t t0, int64_t n, int hp, float* lanes)>;
// Lanes per token of the lookup path's buffers: 4 for up to 4 heads, else a multiple of 8.
inline int CqLanes(int heads) { return heads <= 4 ? 4 : (heads + 7) / 8 * 8; }

enum class CqPath {
  kAuto,    // lookup tables when b <= 8 and the range has at least 2^b / 2 tokens, else direct
  kLookup,  // per-group key tables + value histograms (b <= 8)
  kDirect,  // reads each token's centroids (any b; short ranges, where tables cost more)
};

// Accumulates into s the attention of s.heads queries q (heads, head_dim), already scaled by
// 1/sqrt(head_dim), over tokens [t0, t1) of `head`. `score`, when set, replaces key lookups.
// Exact up to fp32 rounding: weights are exp(s - m_ref) with m_ref <= the running max + 8
// (see attn_cq.cc), so no quantised scores and no overflow.
void CqAttend(const CqHeadView& head, const float* q, int64_t t0, int64_t t1, const AttnState& s,
              const CqScoreFn& score = nullptr, CqPath path = CqPath::kAuto);
// CqAttend's lookup path (b <= 8, heads <= 64; checked) with scores from `lane_score`, called
// once per sub-block of at most 512 tokens.
void CqAttendLanes(const CqHeadView& head, const float* q, int64_t t0, int64_t t1,
                   const AttnState& s, const CqLaneScoreFn& lane_score);
// Scalar reference: decodes every token's key and value from the tables, double dot products,
// exact online softmax per token.
void CqAttendRef(const CqHeadView& head, const float* q, int64_t t0, int64_t t1, const AttnState& s,
                 const CqScoreFn& score = nullptr);

// Code i of a packed stream of b-bit codes (b <= 16): bits [i*b, i*b + b), little-endian. b = 8
// and b = 4 are plain byte / nibble reads; other widths load a 32-bit word (b <= 16 plus a shift
// <= 7 fits), so streams keep 4 readable bytes past their last code. Inline: it sits in the
// per-token loops of the decode and prefill paths.
inline uint32_t ReadCqCode(const uint8_t* p, int64_t i, int bits) {
  if (bits == 8) return p[i];
  if (bits == 4) return (p[i >> 1] >> ((i & 1) * 4)) & 0xfu;
  const uint64_t bit = static_cast<uint64_t>(i) * bits;
  uint32_t w;
  std::memcpy(&w, p + (bit >> 3), 4);
  return (w >> (bit & 7)) & ((1u << bits) - 1);
}

// The codes of token t: the stream holding it (a page's, or the single one) and the stream index
// of its group g0 code, so code (t, g0 + gi) is ReadCqCode(*codes, base + gi, bits).
inline int64_t CqTokenCodes(const CqHeadView& h, int kind, int64_t t, const uint8_t** codes) {
  if (h.k_pages == nullptr) {
    *codes = kind == 0 ? h.k_codes : h.v_codes;
    return t * h.n_groups + h.g0;
  }
  const int64_t page = t / h.page_tokens;
  *codes = (kind == 0 ? h.k_pages : h.v_pages)[page];
  return (t - page * h.page_tokens) * h.n_groups + h.g0;
}

// Calls fn(local, lt, n, i) for each piece of tokens [b0, b0 + bn) that lies in one page:
// `local` is a single-stream view of that page's codes, lt the page-local index of the piece's
// first token, i its offset from b0. Without pages: one call fn(h, b0, bn, 0).
template <typename Fn>
inline void CqForEachPiece(const CqHeadView& h, int64_t b0, int64_t bn, const Fn& fn) {
  if (h.k_pages == nullptr) {
    fn(h, b0, bn, int64_t{0});
    return;
  }
  CqHeadView local = h;
  local.k_pages = local.v_pages = nullptr;
  for (int64_t i = 0; i < bn;) {
    const int64_t t = b0 + i, page = t / h.page_tokens, lt = t - page * h.page_tokens;
    const int64_t n = std::min(bn - i, h.page_tokens - lt);
    local.k_codes = h.k_pages[page];
    local.v_codes = h.v_pages[page];
    fn(static_cast<const CqHeadView&>(local), lt, n, i);
    i += n;
  }
}

// The direct path on its own (CqPath::kDirect), exact online softmax per 64-token block.
void CqAttendDirect(const CqHeadView& head, const float* q, int64_t t0, int64_t t1,
                    const AttnState& s, const CqScoreFn& score = nullptr);

}  // namespace cqkv
