// Decode-time partial attention computed directly on coupled-quantization codes: key scores are
// sums of per-group lookup tables (query . centroid), values are per-group histograms of softmax
// weight over centroid indices, reduced against the centroids once per token range.
#pragma once

#include <cstdint>
#include <cstring>
#include <functional>

#include "kernels/attn_dense.h"

namespace cqkv {

// The codes and centroid tables of one KV head of one layer.
struct CqHeadView {
  // Packed code streams: the b-bit code of (token t, group g) is bits [(t*n_groups + g) * b, +b)
  // little-endian (kv/cq_cache.cc), with 4 readable zero bytes past the end.
  const uint8_t* k_codes = nullptr;
  const uint8_t* v_codes = nullptr;
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

// The direct path on its own (CqPath::kDirect), exact online softmax per 64-token block.
void CqAttendDirect(const CqHeadView& head, const float* q, int64_t t0, int64_t t1,
                    const AttnState& s, const CqScoreFn& score = nullptr);

}  // namespace cqkv
