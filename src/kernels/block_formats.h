// Byte layouts of GGML's block-quantised row types beyond Q8_0/Q4_0 (the K-quants Q2_K..Q6_K and
// the 32-element fallbacks Q4_1, Q5_0, Q5_1, IQ4_NL), their scalar reference dequantisers, and
// the vector row kernels for them (kernels/block_quant.cc) that kernels/dequant.cc dispatches to.
#pragma once

#include <cstdint>

#include "util/tensor.h"

namespace cqkv::block_formats {

// Layouts (offsets in bytes; "fp16" is an IEEE half, little-endian; all scales are finite in
// files written by llama.cpp). An element's value is given per type as the reference computes it.
//
// Q4_1 (32): d fp16 @0, m fp16 @2, nibbles @4[16]. Byte j: element j (low), j + 16 (high).
//   value = d q + m.
// Q5_0 (32): d fp16 @0, high bits u32 @2, nibbles @6[16]. Bit i of the u32 is bit 4 of element i.
//   value = d (q - 16).
// Q5_1 (32): d @0, m @2, high bits u32 @4, nibbles @8[16]. value = d q + m.
// IQ4_NL (32): d fp16 @0, nibbles @2[16] indexing kIq4nlValues. value = d table[q].
//
// Q2_K (256): scales @0[16] (low nibble: scale, high nibble: min of a 16-element sub-block),
//   2-bit quants @16[64], d fp16 @80, dmin fp16 @82. Element 128 h + 32 s + l (h < 2, s < 4,
//   l < 32) is bits 2s..2s+1 of quant byte 32 h + l, in sub-block 8 h + 2 s + l / 16.
//   value = d sc q - dmin m.
// Q3_K (256): high-bit mask @0[32], 2-bit quants @32[64], packed 6-bit scales @96[12], d fp16
//   @108. Element 128 h + 32 s + l takes its low 2 bits as Q2_K does and its third bit from bit
//   4 h + s of mask byte l; q = low + 4 bit - 4 (so -4..3). Sub-block k = 8 h + 2 s + l / 16 has
//   scale (low 4 bits: k < 8 ? byte k & 15 : byte k - 8 >> 4; bits 4-5: byte 8 + k % 4 >> 2 (k /
//   4)) minus 32. value = d scale q.
// Q4_K (256): d fp16 @0, dmin fp16 @2, packed 6-bit scales and mins @4[12], nibbles @16[128].
//   Element 64 g + l (g < 4, l < 32) is the low nibble of byte 32 g + l, element 64 g + 32 + l its
//   high nibble; sub-block k = element / 32 has 6-bit (sc, m) from Q4KScaleMin. value = d sc q -
//   dmin m.
// Q5_K (256): d @0, dmin @2, scales @4[12], high bits @16[32], nibbles @48[128]. As Q4_K, plus 16
//   when bit k of high-bit byte l is set (k = sub-block, l = element % 32).
// Q6_K (256): low nibbles @0[128], high 2-bit pairs @128[64], int8 scales @192[16], d fp16 @208.
//   Element 128 h + 32 s + l (h < 2, s < 4, l < 32): low 4 bits are nibble s / 2 (0: low) of
//   byte 64 h + 32 (s % 2) + l, high 2 bits are bits 2s..2s+1 of byte 128 + 32 h + l,
//   q = (high << 4 | low) - 32; scale int8 at 192 + 8 h + 2 s + l / 16.
//   value = d scale q.

inline constexpr int kSuperBlock = 256;

// IQ4_NL's 16 levels (ggml-common.h kvalues_iq4nl): a non-uniform grid denser near zero.
inline constexpr int8_t kIq4nlValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                            1,    13,   25,  38,  53,  69,  89,  113};

// The 6-bit (scale, min) of sub-block k (0..7) of a Q4_K/Q5_K super-block from its 12 packed
// bytes: k < 4 in the low 6 bits of bytes k and k + 4; k >= 4 split between byte k + 4's nibbles
// and the top 2 bits of bytes k - 4 and k.
inline void Q4KScaleMin(const uint8_t* s, int k, int& scale, int& min) {
  if (k < 4) {
    scale = s[k] & 63;
    min = s[k + 4] & 63;
  } else {
    scale = (s[k + 4] & 15) | (s[k - 4] >> 6) << 4;
    min = (s[k + 4] >> 4) | (s[k] >> 6) << 4;
  }
}

// The signed scale (-32..31) of Q3_K sub-block k (0..15) from its 12 packed bytes.
inline int Q3KScale(const uint8_t* s, int k) {
  const int low = k < 8 ? s[k] & 15 : s[k - 8] >> 4;
  const int high = (s[8 + k % 4] >> (2 * (k / 4))) & 3;
  return (low | high << 4) - 32;
}

// True for the types this file handles.
bool IsBlockFormat(DType t);

// Scalar reference: `n` elements (a multiple of the type's block size) of a row of type t, one
// element at a time from the definitions above.
void DequantizeRowRef(DType t, const uint8_t* row, int64_t n, float* out);

// Vector kernels (run-time dispatched): widen a row; dot a row with fp32 x, decoding each block
// in registers and applying each sub-block's scale (and min) once to its partial sum.
void DequantizeRow(DType t, const uint8_t* row, int64_t n, float* out);
float DotRow(DType t, const uint8_t* row, const float* x, int64_t n);

}  // namespace cqkv::block_formats
