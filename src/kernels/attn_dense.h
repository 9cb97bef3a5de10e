// Decode-time partial attention over dense fp32 / fp16 key and value rows (the baseline the CQ
// kernels are measured against), and the flash-decoding softmax state they all accumulate into.
// Vector versions dispatch at run time (Highway); the *Ref versions are the scalar definition.
#pragma once

#include <cstdint>

namespace cqkv {

// Softmax state of `heads` query heads over the tokens seen so far (flash-decoding): per head
// m = max score, l = sum_t exp(s_t - m), acc (heads, head_dim) = sum_t exp(s_t - m) v_t.
// The empty state is m = -inf, l = 0, acc = 0; out = acc / l once every range is merged.
struct AttnState {
  float* m;    // (heads)
  float* l;    // (heads)
  float* acc;  // (heads, head_dim) row-major
  int heads;
  int head_dim;
};
void ResetAttnState(const AttnState& s);
// dst <- merge(dst, src): rescales both to the larger max. Either may be empty.
void MergeAttnState(const AttnState& dst, const AttnState& src);
// Folds one block of scores (heads, n) row-major, already scaled, into s (online softmax):
// raises m where needed, rescaling l and acc, and overwrites `scores` with exp(s - m).
// Vectorised (Highway's Exp, within a few ulp of std::exp; fp32 lane sums): the one softmax
// block of the dense, CQ direct, additive and tq kernels.
void SoftmaxBlock(const AttnState& s, float* scores, int64_t n);
// The same over rows of `stride` floats (head h's n scores at scores + h * stride); when
// block_sums is set, block_sums[h] = sum of head h's new weights (before any later rescale).
void SoftmaxBlockStrided(const AttnState& s, float* scores, int64_t n, int64_t stride,
                         float* block_sums);
// out[h] = max of head h's n scores (rows of `stride` floats), -inf when n = 0; vectorised.
void BlockMax(const float* scores, int heads, int64_t n, int64_t stride, float* out);
// Scalar definition of SoftmaxBlock (std::exp, double sums): the references' softmax.
void SoftmaxBlockRef(const AttnState& s, float* scores, int64_t n);

// Attention of the s.heads queries q (heads, head_dim), already scaled by 1/sqrt(head_dim), over
// n tokens whose key and value rows (head_dim each) sit at k + i*stride and v + i*stride,
// accumulated into s. fp16 rows are raw IEEE half bits; all sums are fp32.
void DenseAttendF32(const float* q, const float* k, const float* v, int64_t stride, int64_t n,
                    const AttnState& s);
void DenseAttendF16(const float* q, const uint16_t* k, const uint16_t* v, int64_t stride, int64_t n,
                    const AttnState& s);

// A KV head's uniformly quantised rows, read in place: row t holds head_dim B-bit codes packed
// little-endian (channel c at bits [c*B, c*B + B)) at codes + t * code_bytes; a value is
// min + code * scale with IEEE-half (scale, min) pairs laid out as one of:
//  - token_group == 0 (int<B>-token): per row, one pair per `group` channels, at
//    params + t * params_per_row (params_per_row = 2 * head_dim / group);
//  - token_group > 0 (int<B>-channel): per channel, shared by token_group consecutive rows, the
//    pairs of rows [g * token_group, ...) interleaved by channel at params + g * params_per_row
//    (params_per_row = 2 * head_dim).
struct IntRowsView {
  const uint8_t* codes;  // must stay readable 64 bytes past the last row (vector loads)
  const uint16_t* params;
  int64_t code_bytes;
  int64_t params_per_row;
  int bits;             // 1, 2, 4 or 8
  int group;            // token layout: a multiple of 16 (vectors never straddle groups)
  int token_group = 0;  // channel layout: >= 32
};
// Whether IntAttend reads rows of this shape: 1, 2, 4 or 8 bits; token layout, groups of a
// multiple of 16 channels and head_dim <= 512; channel layout, token groups of >= 32 rows and
// head_dim <= 512.
bool IntAttendSupports(const IntRowsView& rows);
// DenseAttendF32 over n such rows, dequantised in registers (no scratch round trip): equals
// dequantise-then-attend up to fp32 rounding (min + code * scale is one fused multiply-add).
void IntAttend(const float* q, const IntRowsView& k, const IntRowsView& v, int64_t n,
               const AttnState& s);

// Scalar references: per token, double-precision dot, then the exact online update.
void DenseAttendF32Ref(const float* q, const float* k, const float* v, int64_t stride, int64_t n,
                       const AttnState& s);
void DenseAttendF16Ref(const float* q, const uint16_t* k, const uint16_t* v, int64_t stride,
                       int64_t n, const AttnState& s);

}  // namespace cqkv
