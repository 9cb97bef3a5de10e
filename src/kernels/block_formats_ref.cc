// Scalar reference dequantisers of the block formats in block_formats.h: each element is decoded
// on its own from its index, straight from the layout description, so the vector kernels (which
// decode whole sub-blocks at once) are checked against an independent reading of the format.
#include <cmath>
#include <cstring>

#include "kernels/block_formats.h"
#include "util/error.h"
#include "util/fp16.h"

namespace cqkv::block_formats {
namespace {

float Half(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return F16ToF32(h);
}

uint32_t U32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// Nibble of element i (0..31) of a 32-element block: low nibbles hold elements 0..15.
int Nibble32(const uint8_t* qs, int i) { return i < 16 ? qs[i] & 15 : qs[i - 16] >> 4; }

// Formats with an offset round scale q + offset once (std::fma): scale q is exact in fp32 for
// each of them (at most 11 + 6 + 5 significant bits), so that is the correctly rounded value, and
// the vector kernels reproduce it bit for bit (llama.cpp's dequantisers round the product first: at
// most one fp32 ulp apart).
float Affine(float scale, int q, float offset) {
  return std::fma(scale, static_cast<float>(q), offset);
}

float Q4_1(const uint8_t* b, int i) { return Affine(Half(b), Nibble32(b + 4, i), Half(b + 2)); }

float Q5_0(const uint8_t* b, int i) {
  const int q = Nibble32(b + 6, i) | ((U32(b + 2) >> i) & 1) << 4;
  return Half(b) * static_cast<float>(q - 16);
}

float Q5_1(const uint8_t* b, int i) {
  const int q = Nibble32(b + 8, i) | ((U32(b + 4) >> i) & 1) << 4;
  return Affine(Half(b), q, Half(b + 2));
}

float IQ4_NL(const uint8_t* b, int i) {
  return Half(b) * static_cast<float>(kIq4nlValues[Nibble32(b + 2, i)]);
}

// Position of element i (0..255) within the 128-element halves used by Q2_K, Q3_K and Q6_K.
struct HalfPos {
  int h, s, l;
  explicit HalfPos(int i) : h(i / 128), s(i % 128 / 32), l(i % 32) {}
  int SubBlock16() const { return 8 * h + 2 * s + l / 16; }
};

float Q2_K(const uint8_t* b, int i) {
  const HalfPos p(i);
  const int q = (b[16 + 32 * p.h + p.l] >> (2 * p.s)) & 3;
  const int sc = b[p.SubBlock16()];
  return Affine(Half(b + 80) * static_cast<float>(sc & 15), q,
                -(Half(b + 82) * static_cast<float>(sc >> 4)));
}

float Q3_K(const uint8_t* b, int i) {
  const HalfPos p(i);
  const int low = (b[32 + 32 * p.h + p.l] >> (2 * p.s)) & 3;
  const int bit = (b[p.l] >> (4 * p.h + p.s)) & 1;
  const int q = low + 4 * bit - 4;
  return Half(b + 108) * static_cast<float>(Q3KScale(b + 96, p.SubBlock16())) * q;
}

// Q4_K and Q5_K: element i is in sub-block i / 32; sub-blocks 2g and 2g + 1 share quant bytes
// 32 g .. 32 g + 31 (low resp. high nibbles).
float Q4_K(const uint8_t* b, int i) {
  const int k = i / 32, l = i % 32;
  const uint8_t byte = b[16 + 32 * (k / 2) + l];
  const int q = k % 2 == 0 ? byte & 15 : byte >> 4;
  int sc, m;
  Q4KScaleMin(b + 4, k, sc, m);
  return Affine(Half(b) * static_cast<float>(sc), q, -(Half(b + 2) * static_cast<float>(m)));
}

float Q5_K(const uint8_t* b, int i) {
  const int k = i / 32, l = i % 32;
  const uint8_t byte = b[48 + 32 * (k / 2) + l];
  const int q = (k % 2 == 0 ? byte & 15 : byte >> 4) | ((b[16 + l] >> k) & 1) << 4;
  int sc, m;
  Q4KScaleMin(b + 4, k, sc, m);
  return Affine(Half(b) * static_cast<float>(sc), q, -(Half(b + 2) * static_cast<float>(m)));
}

float Q6_K(const uint8_t* b, int i) {
  const HalfPos p(i);
  const uint8_t lo_byte = b[64 * p.h + 32 * (p.s % 2) + p.l];
  const int low = p.s < 2 ? lo_byte & 15 : lo_byte >> 4;
  const int high = (b[128 + 32 * p.h + p.l] >> (2 * p.s)) & 3;
  const int q = (high << 4 | low) - 32;
  const auto sc = static_cast<int8_t>(b[192 + p.SubBlock16()]);
  return Half(b + 208) * static_cast<float>(sc) * static_cast<float>(q);
}

using ElementFn = float (*)(const uint8_t*, int);

ElementFn ElementDecoder(DType t) {
  switch (t) {
    case DType::kQ4_1:
      return Q4_1;
    case DType::kQ5_0:
      return Q5_0;
    case DType::kQ5_1:
      return Q5_1;
    case DType::kIQ4_NL:
      return IQ4_NL;
    case DType::kQ2_K:
      return Q2_K;
    case DType::kQ3_K:
      return Q3_K;
    case DType::kQ4_K:
      return Q4_K;
    case DType::kQ5_K:
      return Q5_K;
    case DType::kQ6_K:
      return Q6_K;
    default:
      return nullptr;
  }
}

}  // namespace

bool IsBlockFormat(DType t) { return ElementDecoder(t) != nullptr; }

void DequantizeRowRef(DType t, const uint8_t* row, int64_t n, float* out) {
  const ElementFn fn = ElementDecoder(t);
  CQKV_CHECK(fn != nullptr, "no block-format decoder for type {}", DTypeName(t));
  const int64_t bs = DTypeBlockSize(t), bytes = DTypeBlockBytes(t);
  for (int64_t i = 0; i < n; ++i) out[i] = fn(row + i / bs * bytes, static_cast<int>(i % bs));
}

}  // namespace cqkv::block_formats
