// Row kernels over stored weight types (F32/F16/BF16/Q8_0/Q4_0 here; the K-quants and other block
// formats in block_formats.h): widen a row to fp32, dot a row with an fp32 vector (the decode
// matvec inner loop), and quantise fp32 rows to F16/BF16/Q8_0/Q4_0 for tests and tools.
// Vector versions dispatch at run time (Highway); the *Ref versions are the scalar definition.
#pragma once

#include <cstdint>

#include "util/tensor.h"

namespace cqkv {

// Writes the `n` elements of `row` (stored as `t`) to `out` as fp32. For quantised types n must
// be a multiple of the block size (32, or 256 for the K-quants).
void DequantizeRow(DType t, const void* row, int64_t n, float* out);
// sum_i row[i] * x[i] with fp32 accumulation; same length rule as DequantizeRow.
float DotRow(DType t, const void* row, const float* x, int64_t n);

// Scalar references: one element at a time in index order, the definition the vector paths are
// tested against.
void DequantizeRowRef(DType t, const void* row, int64_t n, float* out);
float DotRowRef(DType t, const void* row, const float* x, int64_t n);

// llama.cpp's reference quantisers (n a multiple of 32; `out` holds DTypeRowBytes(t, n) bytes).
// Q8_0: d = max|x| / 127, q = round(x / d). Q4_0: d = (signed value of largest magnitude) / -8,
// q = min(15, trunc(x / d + 8.5)), so the extreme value maps exactly to nibble 0.
void QuantizeRowQ8_0(const float* x, int64_t n, void* out);
void QuantizeRowQ4_0(const float* x, int64_t n, void* out);
// Encodes n floats as type t (round to nearest for F16/BF16, the quantisers above otherwise).
void QuantizeRow(DType t, const float* x, int64_t n, void* out);

}  // namespace cqkv
