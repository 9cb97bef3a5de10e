#include "kernels/dequant.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <random>
#include <vector>

#include "kernels/hwy_targets_testing.h"
#include "util/fp16.h"

namespace cqkv {
namespace {

constexpr float kU = 5.9604645e-8f;  // 2^-24, the fp32 unit roundoff

// Random stored bytes of a row of n elements: every finite value is possible, including f16
// subnormals and the int8 extreme -128; block scales are finite halves.
std::vector<uint8_t> RandomRow(DType t, int64_t n, std::mt19937& rng) {
  std::vector<uint8_t> bytes(DTypeRowBytes(t, n));
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& b : bytes) b = static_cast<uint8_t>(byte(rng));
  auto put16 = [&](size_t at, uint16_t v) { std::memcpy(&bytes[at], &v, 2); };
  auto get16 = [&](size_t at) {
    uint16_t v;
    std::memcpy(&v, &bytes[at], 2);
    return v;
  };
  std::uniform_real_distribution<float> scale(-0.1f, 0.1f);
  switch (t) {
    case DType::kF32: {
      std::normal_distribution<float> nd(0.0f, 1.0f);
      for (int64_t i = 0; i < n; ++i) {
        const float v = nd(rng);
        std::memcpy(&bytes[4 * i], &v, 4);
      }
      break;
    }
    case DType::kF16:  // clear exponent 31 (inf/nan)
      for (int64_t i = 0; i < n; ++i) {
        if ((get16(2 * i) & 0x7c00) == 0x7c00) put16(2 * i, get16(2 * i) & 0xbfff);
      }
      break;
    case DType::kBF16: {  // exponents within 2^+-30 (products must not overflow) or subnormal
      std::uniform_int_distribution<int> exp(127 - 30, 127 + 30);
      for (int64_t i = 0; i < n; ++i) {
        const int e = i % 17 == 5 ? 0 : exp(rng);
        put16(2 * i, static_cast<uint16_t>((get16(2 * i) & 0x807f) | e << 7));
      }
      break;
    }
    case DType::kQ8_0:
    case DType::kQ4_0:
      for (int64_t b = 0; b < n / 32; ++b) {
        const uint16_t d = b == 1 ? uint16_t{0x8001} : F32ToF16(scale(rng));  // one subnormal
        put16(b * DTypeBlockBytes(t), d);
      }
      break;
    default:  // block formats: tests/kernels/block_quant_test.cc
      break;
  }
  return bytes;
}

std::vector<float> RandomVec(int64_t n, std::mt19937& rng) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(n);
  for (auto& v : x) v = nd(rng);
  return x;
}

// Any two summation orders of n products differ by at most 2 (n + 1) u sum|w_i x_i|
// (the classic (n-1)u bound for each order, plus one rounding per product or FMA).
void ExpectDotMatchesRef(DType t, const std::vector<uint8_t>& bytes, const float* x, int64_t n) {
  std::vector<float> w(n);
  DequantizeRowRef(t, bytes.data(), n, w.data());
  double abs_sum = 0.0;
  for (int64_t i = 0; i < n; ++i) abs_sum += std::fabs(static_cast<double>(w[i]) * x[i]);
  const double tol = 2.0 * (n + 1) * kU * abs_sum + 1e-30;
  const float ref = DotRowRef(t, bytes.data(), x, n);
  const float got = DotRow(t, bytes.data(), x, n);
  EXPECT_NEAR(got, ref, tol) << DTypeName(t) << " n=" << n;
}

using testing::ForEachTarget;

TEST(DequantTest, FloatTypesMatchReferenceAtEveryLength) {
  ForEachTarget([] {
    std::mt19937 rng(1);
    for (DType t : {DType::kF32, DType::kF16, DType::kBF16}) {
      for (int64_t n = 1; n <= 1000; n += (n < 80 ? 1 : 37)) {
        const auto bytes = RandomRow(t, n, rng);
        std::vector<float> want(n), got(n);
        DequantizeRowRef(t, bytes.data(), n, want.data());
        DequantizeRow(t, bytes.data(), n, got.data());
        // Widening is exact, so the vector path must agree bit for bit.
        ASSERT_EQ(std::memcmp(want.data(), got.data(), n * sizeof(float)), 0)
            << DTypeName(t) << " n=" << n;
        // x offset by one element: unaligned loads.
        const auto x = RandomVec(n + 1, rng);
        ExpectDotMatchesRef(t, bytes, x.data() + 1, n);
      }
    }
  });
}

TEST(DequantTest, QuantTypesMatchReferenceForOddBlockCounts) {
  ForEachTarget([] {
    std::mt19937 rng(2);
    for (DType t : {DType::kQ8_0, DType::kQ4_0}) {
      for (int64_t blocks : {1, 2, 3, 5, 8, 17, 33, 128}) {
        const int64_t n = 32 * blocks;
        const auto bytes = RandomRow(t, n, rng);
        std::vector<float> want(n), got(n);
        DequantizeRowRef(t, bytes.data(), n, want.data());
        DequantizeRow(t, bytes.data(), n, got.data());
        // Both compute the same single product float(q) * d per element.
        ASSERT_EQ(std::memcmp(want.data(), got.data(), n * sizeof(float)), 0)
            << DTypeName(t) << " n=" << n;
        const auto x = RandomVec(n + 3, rng);
        ExpectDotMatchesRef(t, bytes, x.data() + 3, n);
      }
    }
  });
}

TEST(DequantTest, UnalignedRowPointers) {
  // Q4_0 rows are 18-byte multiples and F16 rows may start at any even byte.
  std::mt19937 rng(3);
  for (DType t : {DType::kF16, DType::kQ8_0, DType::kQ4_0, DType::kF32}) {
    const int64_t n = 96;
    auto bytes = RandomRow(t, n, rng);
    std::vector<uint8_t> shifted(bytes.size() + 1);
    std::memcpy(shifted.data() + 1, bytes.data(), bytes.size());
    const auto x = RandomVec(n, rng);
    EXPECT_EQ(DotRow(t, shifted.data() + 1, x.data(), n), DotRow(t, bytes.data(), x.data(), n))
        << DTypeName(t);
  }
}

TEST(DequantTest, KnownBytes) {
  ForEachTarget([] {
    // F16: 1, -2, 65504 (largest half), 2^-24 (smallest subnormal), -0.
    const uint16_t f16[] = {0x3c00, 0xc000, 0x7bff, 0x0001, 0x8000};
    float out[32];
    DequantizeRow(DType::kF16, f16, 5, out);
    EXPECT_EQ(out[0], 1.0f);
    EXPECT_EQ(out[1], -2.0f);
    EXPECT_EQ(out[2], 65504.0f);
    EXPECT_EQ(out[3], std::ldexp(1.0f, -24));
    EXPECT_TRUE(out[4] == 0.0f && std::signbit(out[4]));
    // BF16: 1, -3, 3.140625.
    const uint16_t bf16[] = {0x3f80, 0xc040, 0x4049};
    DequantizeRow(DType::kBF16, bf16, 3, out);
    EXPECT_EQ(out[0], 1.0f);
    EXPECT_EQ(out[1], -3.0f);
    EXPECT_EQ(out[2], 3.140625f);

    const std::vector<float> ones(32, 1.0f);
    // Q8_0: d = 0.5 (0x3800), q_j = j - 16.
    uint8_t q8[34] = {0x00, 0x38};
    for (int j = 0; j < 32; ++j) q8[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(j - 16));
    DequantizeRow(DType::kQ8_0, q8, 32, out);
    for (int j = 0; j < 32; ++j) EXPECT_EQ(out[j], 0.5f * (j - 16)) << j;
    EXPECT_EQ(DotRow(DType::kQ8_0, q8, ones.data(), 32), -8.0f);  // 0.5 * (496 - 512)

    // Q4_0: d = 0.25 (0x3400); byte j = j | (15 - j) << 4, so element j = (j - 8) / 4 and element
    // j + 16 = (7 - j) / 4.
    uint8_t q4[18] = {0x00, 0x34};
    for (int j = 0; j < 16; ++j) q4[2 + j] = static_cast<uint8_t>(j | (15 - j) << 4);
    DequantizeRow(DType::kQ4_0, q4, 32, out);
    for (int j = 0; j < 16; ++j) {
      EXPECT_EQ(out[j], 0.25f * (j - 8)) << j;
      EXPECT_EQ(out[16 + j], 0.25f * (7 - j)) << j;
    }
    EXPECT_EQ(DotRow(DType::kQ4_0, q4, ones.data(), 32), -4.0f);  // 16 pairs summing to -1/4 each
  });
}

TEST(DequantTest, QuantizeKnownBytes) {
  // Q8_0: amax 127 gives d = 1 exactly, so q = x.
  float x[32];
  for (int j = 0; j < 31; ++j) x[j] = static_cast<float>(j - 16);
  x[31] = 127.0f;
  uint8_t q8[34];
  QuantizeRowQ8_0(x, 32, q8);
  EXPECT_EQ(q8[0], 0x00);
  EXPECT_EQ(q8[1], 0x3c);
  for (int j = 0; j < 31; ++j) EXPECT_EQ(static_cast<int8_t>(q8[2 + j]), j - 16) << j;
  EXPECT_EQ(q8[33], 127);

  // Q4_0: the extreme value -8 gives d = -8 / -8 = 1; q = trunc(x + 8.5) rounds halves up.
  for (int j = 0; j < 16; ++j) {
    x[j] = static_cast<float>(j - 8);
    x[16 + j] = 0.5f * j - 4.0f;
  }
  uint8_t q4[18];
  QuantizeRowQ4_0(x, 32, q4);
  EXPECT_EQ(q4[0], 0x00);
  EXPECT_EQ(q4[1], 0x3c);
  for (int j = 0; j < 16; ++j) {
    const int hi = 4 + (j + 1) / 2;  // floor(0.5 j + 4.5)
    EXPECT_EQ(q4[2 + j], j | hi << 4) << j;
  }
  // A positive extreme makes d negative (llama.cpp's convention) and still maps it to nibble 0.
  for (float& v : x) v = 0.0f;
  x[0] = 8.0f;
  QuantizeRowQ4_0(x, 32, q4);
  EXPECT_EQ(F16ToF32(static_cast<uint16_t>(q4[0] | q4[1] << 8)), -1.0f);
  EXPECT_EQ(q4[2] & 15, 0);
  float back[32];
  DequantizeRow(DType::kQ4_0, q4, 32, back);
  EXPECT_EQ(back[0], 8.0f);
  EXPECT_EQ(back[1], 0.0f);

  // All-zero blocks quantise to d = 0 and dequantise to exact zeros.
  for (float& v : x) v = 0.0f;
  QuantizeRowQ8_0(x, 32, q8);
  QuantizeRowQ4_0(x, 32, q4);
  DequantizeRow(DType::kQ8_0, q8, 32, back);
  for (float v : back) EXPECT_EQ(v, 0.0f);
  DequantizeRow(DType::kQ4_0, q4, 32, back);
  for (float v : back) EXPECT_EQ(v, 0.0f);
}

// Error bounds of quantise -> dequantise, per element, with d the unrounded block scale:
// Q8_0 rounds x/d to the nearest integer: |err| <= |d|/2. Q4_0 does too, except values with
// x/d in [7.5, 8] (the side opposite the extreme), clamped to 7: |err| <= |d|. Storing d as fp16
// adds at most |q| |d| 2^-11, with |q| <= 127 resp. 8. A 1e-6 relative slack covers the fp32
// rounding of x * (1/d).
TEST(DequantTest, QuantizeDequantizeErrorBounds) {
  std::mt19937 rng(4);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int64_t n = 32 * 64;
  std::vector<float> x(n);
  for (int64_t i = 0; i < n; ++i) x[i] = nd(rng) * (1.0f + static_cast<float>(i / 32));
  // One block whose extremes are +-1, so Q4_0 must clamp the value opposite the extreme.
  for (int j = 0; j < 32; ++j) x[j] = j % 2 ? 1.0f : -1.0f;
  std::vector<uint8_t> q8(DTypeRowBytes(DType::kQ8_0, n)), q4(DTypeRowBytes(DType::kQ4_0, n));
  QuantizeRowQ8_0(x.data(), n, q8.data());
  QuantizeRowQ4_0(x.data(), n, q4.data());
  std::vector<float> y8(n), y4(n);
  DequantizeRow(DType::kQ8_0, q8.data(), n, y8.data());
  DequantizeRow(DType::kQ4_0, q4.data(), n, y4.data());
  int clamped = 0;
  for (int64_t b = 0; b < n / 32; ++b) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; ++j) {
      if (std::fabs(x[b * 32 + j]) > amax) {
        amax = std::fabs(x[b * 32 + j]);
        max = x[b * 32 + j];
      }
    }
    const float d8 = amax / 127.0f;
    const float d4 = max / -8.0f;
    for (int j = 0; j < 32; ++j) {
      const int64_t i = b * 32 + j;
      const float slack = 1e-6f * amax;
      EXPECT_LE(std::fabs(y8[i] - x[i]), d8 * (0.5f + 127.0f / 2048.0f) + slack) << i;
      const bool clamp = x[i] / d4 >= 7.5f;
      clamped += clamp;
      const float bound4 = std::fabs(d4) * ((clamp ? 1.0f : 0.5f) + 8.0f / 2048.0f) + slack;
      EXPECT_LE(std::fabs(y4[i] - x[i]), bound4) << i;
    }
  }
  EXPECT_GE(clamped, 16);  // the +-1 block exercised the clamp
}

}  // namespace
}  // namespace cqkv
