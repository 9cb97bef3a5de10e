// Decode attention on CQ codes whose values are additive binary codes (quant/additive.h): a
// group's value is b0 + the basis vectors B_j its code's set bits select, so
// sum_t p_t v_t = (sum_t p_t) b0 + sum_j (sum of p_t over tokens with bit j set) B_j. The per-bit
// sums are dense masked adds over the code bits as stored, with no per-token table access.
#pragma once

#include <cstdint>

#include "kernels/attn_cq.h"

namespace cqkv {

// sums[h * lanes + x] += sum_{i < n} p[h * p_stride + i] * bit x of row i, for h < heads, where
// row i is the `row_bytes` bytes at rows + i * row_stride (bit x = bit x % 8 of byte x / 8) and
// lanes = 8 * row_bytes. row_bytes must be a multiple of 8 (callers pad rows with zero bytes).
void AdditiveBitSums(const uint8_t* rows, int64_t row_stride, int64_t row_bytes, int64_t n,
                     const float* p, int64_t p_stride, int heads, float* sums);
// Scalar definition of AdditiveBitSums.
void AdditiveBitSumsRef(const uint8_t* rows, int64_t row_stride, int64_t row_bytes, int64_t n,
                        const float* p, int64_t p_stride, int heads, float* sums);

// CqAttend for a head whose values are additive: `head.v_codes`/`v_pages` hold the value codes
// in the usual packed layout and `v_basis` the head's bases (groups, bits + 1, c) (row 0 of a
// group b0, row 1 + j B_j); head.v_table is not read. Keys as in CqAttend: `score` when set,
// else per-group key tables (b <= 8) or the token's centroids. The head's value code bits must
// start and end on byte boundaries (g0 * b and n_groups * b multiples of 8; checked).
// Exact up to fp32 rounding: equals dequantise-then-attend with the expanded centroids
// (ExpandAdditive) but sums weights per bit over blocks of tokens first.
void CqAttendAdditive(const CqHeadView& head, const float* v_basis, const float* q, int64_t t0,
                      int64_t t1, const AttnState& s, const CqScoreFn& score = nullptr);
// CqAttendAdditive with fast-scan keys (kernels/attn_cq_fastscan.h layout, post-RoPE): each
// block's approximate scores (exact for the block's max candidates) are made in the rows the
// softmax and the bit sums read. Error bound as CqAttendFastScan's: each normalised output
// channel within tanh(E / 2) * (max - min of that channel over the expanded value centroids) of
// the exact kernel, E = the head's score bound. Throws cqkv::Error when CqFsUnsupported(head).
void CqAttendAdditiveFastScan(const CqHeadView& head, const float* v_basis, const float* q,
                              int64_t t0, int64_t t1, const AttnState& s);
// The same blocks with scalar bit sums and SoftmaxBlockRef: the SIMD kernel's reference.
void CqAttendAdditiveRef(const CqHeadView& head, const float* v_basis, const float* q, int64_t t0,
                         int64_t t1, const AttnState& s, const CqScoreFn& score = nullptr);

}  // namespace cqkv
