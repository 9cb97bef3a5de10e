#include "kernels/ops.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "util/fp16.h"

namespace cqkv {
namespace {

// SIMD sums reorder fp32 additions; with n <= 4096 values of magnitude ~1 the error is bounded
// by ~n * eps * sum|a_i b_i|, so we compare relative to sum|a_i b_i| with a 1e-5 bound.
TEST(Ops, DotMatchesReference) {
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  for (size_t n : {1u, 3u, 7u, 8u, 15u, 16u, 17u, 63u, 64u, 65u, 128u, 1000u, 4096u}) {
    std::vector<float> a(n), b(n);
    std::vector<uint16_t> h(n);
    double mag = 0, magh = 0;
    for (size_t i = 0; i < n; ++i) {
      a[i] = nd(rng);
      b[i] = nd(rng);
      h[i] = F32ToF16(a[i]);
      mag += std::fabs(a[i] * b[i]);
      magh += std::fabs(F16ToF32(h[i]) * b[i]);
    }
    EXPECT_NEAR(Dot(a.data(), b.data(), n), DotRef(a.data(), b.data(), n), 1e-5 * mag) << n;
    EXPECT_NEAR(DotF16(h.data(), b.data(), n), DotF16Ref(h.data(), b.data(), n), 1e-5 * magh) << n;
  }
}

TEST(Ops, AxpyMatchesReference) {
  std::mt19937 rng(2);
  std::normal_distribution<float> nd;
  for (size_t n : {1u, 5u, 16u, 33u, 64u, 129u}) {
    std::vector<float> x(n), y(n);
    std::vector<uint16_t> h(n);
    for (size_t i = 0; i < n; ++i) {
      x[i] = nd(rng);
      y[i] = nd(rng);
      h[i] = F32ToF16(x[i]);
    }
    std::vector<float> y1 = y, y2 = y, y3 = y, y4 = y;
    Axpy(0.37f, x.data(), y1.data(), n);
    AxpyRef(0.37f, x.data(), y2.data(), n);
    AxpyF16(-1.5f, h.data(), y3.data(), n);
    AxpyF16Ref(-1.5f, h.data(), y4.data(), n);
    for (size_t i = 0; i < n; ++i) {
      // One fused multiply-add vs multiply then add: at most one rounding apart.
      EXPECT_NEAR(y1[i], y2[i], 1e-6f * (std::fabs(y2[i]) + 1));
      EXPECT_NEAR(y3[i], y4[i], 1e-6f * (std::fabs(y4[i]) + 1));
    }
  }
}

TEST(Fp16, ClosedFormValues) {
  EXPECT_EQ(F32ToF16(1.0f), 0x3c00);
  EXPECT_EQ(F32ToF16(-2.0f), 0xc000);
  EXPECT_EQ(F32ToF16(65504.0f), 0x7bff);
  EXPECT_EQ(F32ToF16(1e6f), 0x7c00);                // overflow -> inf
  EXPECT_EQ(F32ToF16(5.9604645e-8f), 0x0001);       // smallest subnormal
  EXPECT_EQ(F32ToF16(1.0f + 1.0f / 2048), 0x3c00);  // tie rounds to even
  EXPECT_EQ(F32ToF16(1.0f + 3.0f / 2048), 0x3c02);  // tie rounds to even (up)
  EXPECT_FLOAT_EQ(F16ToF32(0x3555), 0.333251953125f);
  EXPECT_FLOAT_EQ(F16ToF32(0x0001), 5.9604645e-8f);
  // Every finite half survives a round trip through fp32.
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7c00) == 0x7c00) continue;
    ASSERT_EQ(F32ToF16(F16ToF32(static_cast<uint16_t>(h))), h) << std::hex << h;
  }
  EXPECT_EQ(F32ToBF16(1.0f), 0x3f80);
  EXPECT_FLOAT_EQ(BF16ToF32(0x4049), 3.140625f);
}

}  // namespace
}  // namespace cqkv
