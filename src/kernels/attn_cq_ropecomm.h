// Key scores of pre-RoPE CQ codes whose groups are whole RoPE pairs ("rope-comm" keys,
// quant/rope_comm.h), computed without the cache's per-token RopeTable read: the rotation of a
// token is split into its block's start, folded into the query once per block, and the offset
// inside the block, applied to the decoded key from a small L1-resident phase table.
//
// Math (NORM pairing: channels (2p, 2p+1) of a head form the complex number x_p = x[2p] + i
// x[2p+1], and RoPE at position t multiplies pair p by e^{i t w_p}, i.e. R(t) = diag_p(e^{i t
// w_p})). A rope-comm centroid z is a complex vector over the pairs of its group, so R(t) z = z
// R(t): the rotation commutes with the code (it acts on each pair as a complex scalar, as the 2x2
// block
// [[cos, -sin], [sin, cos]] commutes with every block [[a, -b], [b, a]]). The score of a post-RoPE
// query q against the key of token t (pre-RoPE code z(t)) is
//   s_t = q . R(t) z(t) = Re sum_p conj(q_p) e^{i t w_p} z_p(t).
// With t = B + tau, B = floor(t / K) * K the start of t's block of K = kBlock tokens:
//   s_t = Re sum_p conj(q_p e^{-i B w_p}) (e^{i tau w_p} z_p(t)) = q~_B . R(tau) z(t),
//   q~_B = R(-B) q   (once per block and query head: head_dim / 2 complex products, twice:
//                     R(B) comes from two tables, see RopeCommPhases),
//   R(tau) z(t)      (per token, shared by every query head of the KV head: one complex
//                     product per pair with a phase from a K x head_dim table).
// Per token and KV head this is head_dim / 2 complex products plus heads x head_dim fused
// multiply-adds, with no per-position table read (the RopeTable path reads 2 x head_dim x 4
// bytes per token, more than an fp16 key). A query-side lookup table cannot be shared across
// tokens exactly: the pairs of one group turn at different rates, so the table would differ per
// position. The result is exact: s_t equals dequantise-rotate-dot up to fp32 rounding (the three
// phase factors are each rounded once, |error| <~ 6e-7 x sum_p |q_p||z_p| plus the dot's).
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/attn_cq.h"
#include "kernels/rope.h"

namespace cqkv {

// The phases of the formulation above for one head size and RopeParams (NORM pairing), as
// head_dim-float rows that multiply interleaved (re, im) channels directly: a cos row holds
// (cos, cos) per pair and a sin row (-sin, +sin), so R x = x * cos_row + swap_pairs(x) * sin_row.
// Block starts come from two small tables, R(m K) = R(hi(m) K L) R(lo(m) K) with m = hi L + lo,
// so no table grows with the context by more than one row per K x L tokens.
class RopeCommPhases {
 public:
  static constexpr int kBlock = 32;  // K: tokens per block; the R(tau) rows are 32 KiB at d = 128
  static constexpr int kLo = 64;     // L: blocks per high step
  RopeCommPhases() = default;
  // Positions [0, max_pos). Throws cqkv::Error unless p uses NORM pairing and head_dim is even.
  RopeCommPhases(int head_dim, int64_t max_pos, const RopeParams& p);
  int head_dim() const { return head_dim_; }
  int64_t max_pos() const { return max_pos_; }
  // R(tau), tau in [0, kBlock).
  const float* InCos(int tau) const { return in_.data() + int64_t{tau} * 2 * head_dim_; }
  const float* InSin(int tau) const { return InCos(tau) + head_dim_; }
  // R(lo * kBlock), lo in [0, kLo), and R(hi * kBlock * kLo).
  const float* LoCos(int lo) const { return lo_.data() + int64_t{lo} * 2 * head_dim_; }
  const float* LoSin(int lo) const { return LoCos(lo) + head_dim_; }
  const float* HiCos(int64_t hi) const { return hi_.data() + hi * 2 * head_dim_; }
  const float* HiSin(int64_t hi) const { return HiCos(hi) + head_dim_; }
  int64_t bytes() const {
    return static_cast<int64_t>((in_.size() + lo_.size() + hi_.size()) * sizeof(float));
  }

 private:
  int head_dim_ = 0;
  int64_t max_pos_ = 0;
  // Rows of (cos row, sin row), 2 x head_dim floats each.
  std::vector<float> in_, lo_, hi_;
};

// The keys of one KV head as RopeCommScores reads them.
struct RopeCommKeys {
  CqHeadView codes;                  // key codes (k_codes or k_pages), groups, c, bits
  const float* centroids = nullptr;  // (groups, 2^b, c) centroid-major pre-RoPE centroids
  const RopeCommPhases* phases = nullptr;
};

// scores[h * n + i] = q_h . R(t0 + i) key(t0 + i) for h < heads, i < n, where q (heads,
// head_dim) are post-RoPE queries (already scaled) and key(t) the pre-RoPE centroids of token t's
// codes. codes.c must be even; t0 + n <= phases->max_pos(). Matches CqScoreFn's layout.
void RopeCommScores(const RopeCommKeys& keys, const float* q, int heads, int64_t t0, int64_t n,
                    float* scores);
// Scalar definition: each key decoded, rotated by ApplyRope to its position (angles in double
// from `rope`), dotted with q in double. Independent of RopeCommPhases.
void RopeCommScoresRef(const CqHeadView& codes, const float* centroids, const RopeParams& rope,
                       int head_dim, const float* q, int heads, int64_t t0, int64_t n,
                       float* scores);

}  // namespace cqkv
