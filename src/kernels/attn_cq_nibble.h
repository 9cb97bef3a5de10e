// Decode attention on CQ codes whose values are 16-entry tables per 4-bit code half (nibble):
// k-means values with 4-bit codes, or residual values with 8-bit codes (value = A[code >> 4] +
// B[code & 15], quant/codebook.h ValueKind::kResidual). sum_t p_t v_t is then a sum over nibble
// streams of (16-bin weight histogram of the stream) x (16-entry table); the histograms are built
// in vector registers, one masked add per token, stream and head, with no per-token memory store.
#pragma once

#include <cstdint>

#include "kernels/attn_cq.h"

namespace cqkv {

// Weight histograms of nibble streams. Row i is the row_bytes bytes at rows + i * row_stride;
// stream s < streams = 2 * row_bytes is the low (s even) or high (s odd) nibble of byte s / 2.
//   sums[(h * streams + s) * 16 + v] += sum_{i < n} p[h * p_stride + i] * [nibble s of row i == v]
// for h < heads. fp32: each bin's weights summed from zero in token order, then added to sums.
void NibbleSums(const uint8_t* rows, int64_t row_stride, int64_t row_bytes, int64_t n,
                const float* p, int64_t p_stride, int heads, float* sums);
// Scalar definition of NibbleSums.
void NibbleSumsRef(const uint8_t* rows, int64_t row_stride, int64_t row_bytes, int64_t n,
                   const float* p, int64_t p_stride, int heads, float* sums);
// The same in 32-bit fixed point (integer masked adds; 0.74-1.08x the time of fp32 on this Zen 4
// between runs, so the kernels keep fp32's exact sums): weights must lie in [0, 1] (softmax
// weights relative to the running max) and n <= 256; each weight is rounded to a multiple of 2^-23
// (error <= 2^-24), the integer sums are exact (256 * 2^23 = 2^31 fits an unsigned lane) and
// converted once per call. NibbleSumsFixedRef is its scalar definition (bitwise equal).
void NibbleSumsFixed(const uint8_t* rows, int64_t row_stride, int64_t row_bytes, int64_t n,
                     const float* p, int64_t p_stride, int heads, float* sums);
void NibbleSumsFixedRef(const uint8_t* rows, int64_t row_stride, int64_t row_bytes, int64_t n,
                        const float* p, int64_t p_stride, int heads, float* sums);

// Empty when `head` (with `residual_basis` null for k-means values) can use the nibble kernels,
// else why not: k-means values need 4-bit codes and residual values 8-bit codes, and the head's
// value codes must start and end on byte boundaries.
const char* CqNibbleUnsupported(const CqHeadView& head, const float* residual_basis);

// CqAttend for a head with nibble-table values. residual_basis null: k-means values, 4-bit codes,
// tables read from head.v_table (groups, c, 16). Else residual values, 8-bit codes, the head's
// bases (groups, 32, c): rows 0-15 stage A (high nibble), 16-31 stage B (low nibble);
// head.v_table is not read. Keys as in CqAttend: `score` when set, else per-group key tables
// (ranges of at least 2^b tokens) or the token's centroids. Blocks of 256 tokens: exact online
// softmax (SoftmaxBlockStrided), the block's nibble histograms (NibbleSums, fp32) scaled with acc
// when a block raises the max, reduced against the tables once at the end.
// Exact up to fp32 rounding: equals dequantise-then-attend (CqAttendRef on the expanded table)
// but sums the weights per (stream, bin) first.
void CqAttendNibble(const CqHeadView& head, const float* residual_basis, const float* q, int64_t t0,
                    int64_t t1, const AttnState& s, const CqScoreFn& score = nullptr);
// CqAttendNibble with fast-scan keys (kernels/attn_cq_fastscan.h layout, post-RoPE): each block's
// scores are made by CqFsScores in the rows the softmax and the histograms read. Error as
// CqAttendFastScan's: tanh(E / 2) * the value range per channel, plus fp32 rounding. Throws
// cqkv::Error when CqFsUnsupported(head).
void CqAttendNibbleFastScan(const CqHeadView& head, const float* residual_basis, const float* q,
                            int64_t t0, int64_t t1, const AttnState& s);
// The same blocks with the scalar fp32 histograms (NibbleSumsRef) and SoftmaxBlockRef.
void CqAttendNibbleRef(const CqHeadView& head, const float* residual_basis, const float* q,
                       int64_t t0, int64_t t1, const AttnState& s,
                       const CqScoreFn& score = nullptr);

}  // namespace cqkv
