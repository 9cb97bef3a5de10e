// Vector primitives of the forward pass and the dense KV caches: dot products and axpy over
// fp32 and fp16 rows. Highway picks the widest target (AVX2, AVX-512) at run time; the *Ref
// functions are the scalar truth the SIMD paths are tested against.
#pragma once

#include <cstddef>
#include <cstdint>

namespace cqkv {

float Dot(const float* a, const float* b, size_t n);
// a is IEEE half (raw bits), b fp32; fp32 accumulation.
float DotF16(const uint16_t* a, const float* b, size_t n);
// y += alpha * x
void Axpy(float alpha, const float* x, float* y, size_t n);
void AxpyF16(float alpha, const uint16_t* x, float* y, size_t n);
// Rounds n floats to IEEE half (nearest even).
void F32ToF16Row(const float* x, uint16_t* out, size_t n);

float DotRef(const float* a, const float* b, size_t n);
float DotF16Ref(const uint16_t* a, const float* b, size_t n);
void AxpyRef(float alpha, const float* x, float* y, size_t n);
void AxpyF16Ref(float alpha, const uint16_t* x, float* y, size_t n);

}  // namespace cqkv
