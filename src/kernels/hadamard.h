// Fast orthonormal Walsh-Hadamard transform (Sylvester order, scaled by 1/sqrt(n)) of rows whose
// length is a power of two: the rotation the `:hadamard` integer KV formats and the TurboQuant-
// style `tq<B>` format apply per head. The matrix is symmetric and its own inverse, so the same
// call rotates and un-rotates. Vector version dispatches at run time (Highway); the Ref is the
// scalar definition.
#pragma once

#include <cstdint>
#include <string_view>

namespace cqkv {

inline bool IsPowerOfTwo(int64_t n) { return n > 0 && (n & (n - 1)) == 0; }

// Largest transform length supported (the stack scratch of the callers is sized by it).
constexpr int64_t kMaxHadamardSize = 4096;

// Throws cqkv::Error naming `what` (e.g. the KV format) unless n is a power of two in
// 1..kMaxHadamardSize.
void CheckHadamardSize(int64_t n, std::string_view what);

// x[r * stride + j], j < n, r < rows  <-  (H_n x_r)_j / sqrt(n), in place. n as CheckHadamardSize.
void Fwht(float* x, int64_t rows, int64_t n, int64_t stride);
// Scalar reference: the butterfly stages in double, rounded once at the end.
void FwhtRef(float* x, int64_t rows, int64_t n, int64_t stride);

}  // namespace cqkv
