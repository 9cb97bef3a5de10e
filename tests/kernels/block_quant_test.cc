// The vector kernels of the block formats (kernels/block_quant.cc) against the scalar reference
// (kernels/block_formats_ref.cc), on every compiled target, plus hand-built blocks whose values
// follow from the format definition alone.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <vector>

#include "kernels/block_formats.h"
#include "kernels/dequant.h"
#include "kernels/hwy_targets_testing.h"
#include "kernels/random_blocks.h"
#include "util/fp16.h"

namespace cqkv {
namespace {

using testing::BlockFormats;
using testing::ForEachTarget;
using testing::RandomBlockRow;

constexpr double kU = 5.9604645e-8;  // 2^-24, the fp32 unit roundoff

// Widening must agree bit for bit: both sides round scale q (+ offset) once per element.
// Dot products differ from the exact sum only by summation order and the per-sub-block factoring
// scale sum(q x) + offset sum(x): at most 2 (n + 4) u times the sum of |terms|, a term being
// |scale q_i x_i| + |offset x_i| <= (|w_i| + 2 |offset|) |x_i|. The tolerance takes
// |offset| <= max |w| (true unless every quant of a sub-block avoids 0), i.e. 3 max|w| sum|x|;
// rounding errors of random signs stay far below this worst case.
TEST(BlockQuantTest, VectorMatchesReferenceOnRandomRows) {
  ForEachTarget([] {
    std::mt19937 rng(11);
    for (const auto& f : BlockFormats()) {
      const int64_t bs = DTypeBlockSize(f.type);
      for (int64_t blocks : {1, 2, 3, 5, 16, 33}) {
        const int64_t n = bs * blocks;
        const auto bytes = RandomBlockRow(f, n, rng);
        std::vector<float> want(n), got(n);
        DequantizeRowRef(f.type, bytes.data(), n, want.data());
        DequantizeRow(f.type, bytes.data(), n, got.data());
        for (int64_t i = 0; i < n; ++i) {
          ASSERT_TRUE(std::isfinite(want[i])) << DTypeName(f.type) << " i=" << i;
        }
        ASSERT_EQ(std::memcmp(want.data(), got.data(), n * sizeof(float)), 0)
            << DTypeName(f.type) << " n=" << n;

        std::normal_distribution<float> nd;
        std::vector<float> x(n + 1);
        for (auto& v : x) v = nd(rng);
        const float* xs = x.data() + 1;  // unaligned
        double wmax = 0, xabs = 0;
        for (int64_t i = 0; i < n; ++i) {
          wmax = std::max(wmax, std::fabs(double(want[i])));
          xabs += std::fabs(double(xs[i]));
        }
        double exact = 0;
        for (int64_t i = 0; i < n; ++i) exact += double(want[i]) * xs[i];
        const double tol = 2.0 * (n + 4) * kU * 3.0 * wmax * xabs;
        EXPECT_NEAR(DotRow(f.type, bytes.data(), xs, n), exact, tol)
            << DTypeName(f.type) << " n=" << n;
        EXPECT_NEAR(DotRowRef(f.type, bytes.data(), xs, n), exact, tol)
            << DTypeName(f.type) << " n=" << n;
      }
    }
  });
}

TEST(BlockQuantTest, UnalignedRowPointers) {
  std::mt19937 rng(12);
  for (const auto& f : BlockFormats()) {
    const int64_t n = 2 * DTypeBlockSize(f.type);
    const auto bytes = RandomBlockRow(f, n, rng);
    std::vector<uint8_t> shifted(bytes.size() + 3);
    std::memcpy(shifted.data() + 3, bytes.data(), bytes.size());
    std::vector<float> x(n, 0.5f), a(n), b(n);
    EXPECT_EQ(DotRow(f.type, shifted.data() + 3, x.data(), n),
              DotRow(f.type, bytes.data(), x.data(), n))
        << DTypeName(f.type);
    DequantizeRow(f.type, shifted.data() + 3, n, a.data());
    DequantizeRow(f.type, bytes.data(), n, b.data());
    EXPECT_EQ(a, b) << DTypeName(f.type);
  }
}

// Hand-built blocks: values written down from the format definition, independent of both
// implementations.
TEST(BlockQuantTest, KnownBlocks) {
  ForEachTarget([] {
    const uint16_t one = 0x3c00, half = 0x3800;  // 1.0, 0.5
    // Q4_1: d = 0.5, m = 1; byte j = j | (15 - j) << 4.
    uint8_t q41[20];
    std::memcpy(q41, &half, 2);
    std::memcpy(q41 + 2, &one, 2);
    for (int j = 0; j < 16; ++j) q41[4 + j] = static_cast<uint8_t>(j | (15 - j) << 4);
    float out[256];
    DequantizeRow(DType::kQ4_1, q41, 32, out);
    for (int j = 0; j < 16; ++j) {
      EXPECT_EQ(out[j], 0.5f * j + 1.0f);
      EXPECT_EQ(out[16 + j], 0.5f * (15 - j) + 1.0f);
    }
    // Q5_0: d = 1, nibbles 0, high bits set for odd elements: q = 16 (odd) or 0, minus 16.
    uint8_t q50[22] = {};
    std::memcpy(q50, &one, 2);
    const uint32_t odd = 0xaaaaaaaau;
    std::memcpy(q50 + 2, &odd, 4);
    DequantizeRow(DType::kQ5_0, q50, 32, out);
    for (int j = 0; j < 32; ++j) EXPECT_EQ(out[j], j % 2 ? 0.0f : -16.0f) << j;
    // IQ4_NL: d = 1, element j (j < 16) = table[j], element 16 + j = table[15 - j].
    uint8_t iq[18];
    std::memcpy(iq, &one, 2);
    for (int j = 0; j < 16; ++j) iq[2 + j] = static_cast<uint8_t>(j | (15 - j) << 4);
    DequantizeRow(DType::kIQ4_NL, iq, 32, out);
    EXPECT_EQ(out[0], -127.0f);
    EXPECT_EQ(out[15], 113.0f);
    EXPECT_EQ(out[16], 113.0f);
    EXPECT_EQ(out[8], 1.0f);

    // Q4_K: d = 1, dmin = 0.5; sub-block k has scale k + 1 and min 2 k (k < 4 in the low 6 bits
    // of bytes k, k + 4; k >= 4 in the nibbles of byte k + 4, top bits zero); all nibbles 3
    // (low) and 5 (high), so sub-block k (even k: low nibbles) is (k + 1) q - k.
    uint8_t q4k[144] = {};
    std::memcpy(q4k, &one, 2);
    std::memcpy(q4k + 2, &half, 2);
    for (int k = 0; k < 4; ++k) {
      q4k[4 + k] = static_cast<uint8_t>(k + 1);
      q4k[4 + k + 4] = static_cast<uint8_t>(2 * k);
    }
    for (int k = 4; k < 8; ++k) q4k[4 + k + 4] = static_cast<uint8_t>((k + 1) | (2 * k) << 4);
    for (int j = 0; j < 128; ++j) q4k[16 + j] = 0x53;
    DequantizeRow(DType::kQ4_K, q4k, 256, out);
    for (int i = 0; i < 256; ++i) {
      const int k = i / 32;
      EXPECT_EQ(out[i], static_cast<float>((k + 1) * (k % 2 ? 5 : 3) - k)) << i;
    }
    const std::vector<float> ones(256, 1.0f);
    double sum = 0;
    for (int k = 0; k < 8; ++k) sum += 32.0 * ((k + 1) * (k % 2 ? 5 : 3) - k);
    EXPECT_EQ(DotRow(DType::kQ4_K, q4k, ones.data(), 256), static_cast<float>(sum));

    // Q6_K: d = 0.5, scale of sub-block k = k - 8, low nibbles 1 everywhere, high bits 2 (binary
    // 10) everywhere: q = 33 - 32 = 1, value = 0.5 (k - 8).
    uint8_t q6k[210] = {};
    for (int j = 0; j < 128; ++j) q6k[j] = 0x11;
    for (int j = 0; j < 64; ++j) q6k[128 + j] = 0xaa;
    for (int k = 0; k < 16; ++k) q6k[192 + k] = static_cast<uint8_t>(static_cast<int8_t>(k - 8));
    std::memcpy(q6k + 208, &half, 2);
    DequantizeRow(DType::kQ6_K, q6k, 256, out);
    for (int i = 0; i < 256; ++i) {
      const int k = 8 * (i / 128) + 2 * (i % 128 / 32) + i % 32 / 16;
      EXPECT_EQ(out[i], 0.5f * (k - 8)) << i;
    }
  });
}

TEST(BlockQuantTest, SizesFollowGgml) {
  // ggml-common.h's static_asserts: bytes per block.
  EXPECT_EQ(DTypeBlockBytes(DType::kQ2_K), 84);
  EXPECT_EQ(DTypeBlockBytes(DType::kQ3_K), 110);
  EXPECT_EQ(DTypeBlockBytes(DType::kQ4_K), 144);
  EXPECT_EQ(DTypeBlockBytes(DType::kQ5_K), 176);
  EXPECT_EQ(DTypeBlockBytes(DType::kQ6_K), 210);
  EXPECT_EQ(DTypeBlockBytes(DType::kQ4_1), 20);
  EXPECT_EQ(DTypeBlockBytes(DType::kQ5_0), 22);
  EXPECT_EQ(DTypeBlockBytes(DType::kQ5_1), 24);
  EXPECT_EQ(DTypeBlockBytes(DType::kIQ4_NL), 18);
  for (const auto& f : BlockFormats()) {
    EXPECT_TRUE(block_formats::IsBlockFormat(f.type));
    EXPECT_EQ(DTypeBlockSize(f.type), f.type >= DType::kQ2_K && f.type <= DType::kQ6_K ? 256 : 32);
  }
}

}  // namespace
}  // namespace cqkv
