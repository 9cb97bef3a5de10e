// Quantisers of one group of values into B-bit codes plus fp16 side parameters, shared by the
// baseline KV formats: asymmetric uniform (int<B>-*, kivi<B>) and NormalFloat (nf<B>). Codes are
// bit-packed; these scalar routines are the reference any later fast kernel is tested against.
#pragma once

#include <cstdint>
#include <span>

namespace cqkv {

// Code i of a packed string occupies bits [i*bits, (i+1)*bits), least significant bit first, so
// 3-bit codes may straddle a byte boundary. bits is in 1..8.
inline int64_t PackedBytes(int64_t n_codes, int bits) { return (n_codes * bits + 7) / 8; }

inline uint32_t GetCode(const uint8_t* codes, int64_t i, int bits) {
  const int64_t bit = i * bits;
  const uint8_t* p = codes + bit / 8;
  const int shift = static_cast<int>(bit % 8);
  uint32_t word = p[0];
  if (shift + bits > 8) word |= static_cast<uint32_t>(p[1]) << 8;
  return (word >> shift) & ((1u << bits) - 1u);
}

// The target bits must be zero (strings are zero-filled when they grow and rewritten whole).
inline void PutCode(uint8_t* codes, int64_t i, int bits, uint32_t code) {
  const int64_t bit = i * bits;
  uint8_t* p = codes + bit / 8;
  const int shift = static_cast<int>(bit % 8);
  p[0] |= static_cast<uint8_t>(code << shift);
  if (shift + bits > 8) p[1] |= static_cast<uint8_t>(code >> (8 - shift));
}

// Asymmetric uniform quantisation of a group: x ~ min + code * scale with
// scale = (max - min) / (2^bits - 1). scale and min are rounded to fp16 before coding, because
// that is what is stored, so encoder and decoder agree on the grid.
struct UniformGroup {
  float scale = 0.0f;  // fp16-representable
  float min = 0.0f;    // fp16-representable
  int bits = 0;

  // Fits the n values x[0], x[stride], ...
  static UniformGroup Fit(const float* x, int64_t n, int64_t stride, int bits);
  // From the stored fp16 bits.
  static UniformGroup FromHalf(uint16_t scale, uint16_t min, int bits);
  uint16_t scale_half() const;
  uint16_t min_half() const;

  // round((x - min) / scale) clamped to [0, 2^bits - 1]; a constant group (scale 0) gives 0.
  uint32_t Encode(float x) const;
  float Decode(uint32_t code) const { return min + static_cast<float>(code) * scale; }
};

// NormalFloat levels of 2^bits entries (bits 2, 3, 4), ascending, spanning [-1, 1] with an exact 0.
std::span<const float> NormalFloatLevels(int bits);

// Absmax quantisation of a group onto the NormalFloat levels: x ~ level[code] * absmax.
struct NormalFloatGroup {
  float absmax = 0.0f;  // fp16-representable
  int bits = 0;
  const float* levels = nullptr;  // NormalFloatLevels(bits)

  static NormalFloatGroup Fit(const float* x, int64_t n, int64_t stride, int bits);
  static NormalFloatGroup FromHalf(uint16_t absmax, int bits);
  uint16_t absmax_half() const;

  // The nearest level to x / absmax (ties to the lower level); an all-zero group codes exact 0.
  uint32_t Encode(float x) const;
  float Decode(uint32_t code) const { return levels[code] * absmax; }
};

}  // namespace cqkv
