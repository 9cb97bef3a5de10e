#include "kernels/attn_cq_nibble.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "cq_basis_check.h"
#include "cq_fixtures.h"
#include "hwy_targets_testing.h"
#include "kernels/attn_cq_fastscan.h"
#include "util/error.h"

namespace cqkv {
namespace {

using Paged = testing::CqPaged;
using State = testing::CqState;

// One KV head (the last of n_kv) of random codes and key centroids. 4-bit codes: k-means values,
// v_table as drawn. 8-bit codes: random residual bases (groups, 32, c) and v_table overwritten with
// their expansion A[code >> 4] + B[code & 15] (channel-major), so CqAttendRef is
// dequantise-then-attend with exactly the values the bases represent.
struct Fixture : testing::CqFixture {
  std::vector<float> basis;
  const float* head_basis = nullptr;  // null for k-means values
  float max_abs_value = 0;

  Fixture(int c_, int bits_, int hd_, int64_t n_tokens, int seed, int n_kv_ = 2)
      : CqFixture(c_, bits_, hd_, n_tokens, seed, n_kv_) {
    if (bits == 8) {
      std::mt19937 rng(seed + 1);
      std::normal_distribution<float> nd;
      const int64_t n_groups = view.n_groups;
      basis.resize(static_cast<size_t>(n_groups * 32 * c));
      for (auto& x : basis) x = nd(rng) * 0.7f;
      for (int64_t g = 0; g < n_groups; ++g) {
        for (int code = 0; code < 256; ++code) {
          for (int j = 0; j < c; ++j) {
            v_table[(g * c + j) * 256 + code] =
                basis[(g * 32 + (code >> 4)) * c + j] + basis[(g * 32 + 16 + (code & 15)) * c + j];
          }
        }
      }
      head_basis = basis.data() + int64_t{view.g0} * 32 * c;
    }
    for (float v : v_table) max_abs_value = std::max(max_abs_value, std::abs(v));
  }
};

std::vector<float> RandomWeights(size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> ud(0, 1);
  std::vector<float> p(n);
  for (auto& x : p) x = ud(rng);
  return p;
}

// Every SIMD target adds each bin's weights in token order, as the definition does: bitwise equal.
// The fixed-point sums are integers, converted once: bitwise equal to their scalar definition,
// and within 2^-24 per weight of the fp32 definition.
TEST(NibbleSums, EqualsTheScalarDefinitionBitwise) {
  std::mt19937 rng(5);
  for (int64_t row_bytes : {1, 2, 3, 8, 16, 32}) {
    for (int heads : {1, 3, 4, 5, 8}) {
      for (int64_t n : {1, 7, 256}) {
        const int64_t stride = row_bytes + 3;  // rows inside wider token rows, as in the cache
        std::vector<uint8_t> rows(static_cast<size_t>(n * stride));
        for (auto& b : rows) b = static_cast<uint8_t>(rng());
        const auto p = RandomWeights(static_cast<size_t>(heads * n), rng);
        const size_t size = static_cast<size_t>(heads * row_bytes * 2 * 16);
        std::vector<float> r(size, 0.25f), fr = r;
        NibbleSumsRef(rows.data(), stride, row_bytes, n, p.data(), n, heads, r.data());
        NibbleSumsFixedRef(rows.data(), stride, row_bytes, n, p.data(), n, heads, fr.data());
        for (size_t k = 0; k < size; ++k) {
          ASSERT_NEAR(fr[k], r[k], n * 0x1p-24 + 1e-6) << row_bytes << " bytes, k=" << k;
        }
        testing::ForEachTarget([&] {
          std::vector<float> a(size, 0.25f), fa = a;
          NibbleSums(rows.data(), stride, row_bytes, n, p.data(), n, heads, a.data());
          NibbleSumsFixed(rows.data(), stride, row_bytes, n, p.data(), n, heads, fa.data());
          ASSERT_EQ(a, r) << row_bytes << " bytes, " << heads << " heads, n=" << n;
          ASSERT_EQ(fa, fr) << row_bytes << " bytes, " << heads << " heads, n=" << n;
        });
      }
    }
  }
}

// Closed forms: one byte 0x5a per row puts every weight in bin 10 of stream 0 and bin 5 of
// stream 1; 256 weights of 1 in one bin reach the fixed-point lane's top (2^31) exactly.
TEST(NibbleSums, ClosedForms) {
  std::vector<uint8_t> rows(256, 0x5a);
  const std::vector<float> w = {0.5f, 0.25f, 2.0f};
  std::vector<float> s(32, 0.0f);
  NibbleSums(rows.data(), 1, 1, 3, w.data(), 3, 1, s.data());
  for (int k = 0; k < 32; ++k) EXPECT_EQ(s[k], k == 10 || k == 16 + 5 ? 2.75f : 0.0f) << k;
  const std::vector<float> ones(256, 1.0f);
  std::vector<float> f(32, 0.0f);
  testing::ForEachTarget([&] {
    std::fill(f.begin(), f.end(), 0.0f);
    NibbleSumsFixed(rows.data(), 1, 1, 256, ones.data(), 256, 1, f.data());
    EXPECT_EQ(f[10], 256.0f);
    EXPECT_EQ(f[21], 256.0f);
    EXPECT_EQ(f[0], 0.0f);
  });
  EXPECT_THROW(NibbleSumsFixed(rows.data(), 1, 1, 257, ones.data(), 257, 1, f.data()), Error);
}

// Kernel (every SIMD target) and its scalar reference against dequantise-then-attend
// (testing::CheckBasisKernel).
void Check(int c, int bits, int hd, int G, int64_t t0, int64_t t1, bool callback, bool paged) {
  testing::CheckBasisKernel<Fixture>(
      c, bits, hd, G, t0, t1, callback, paged, [](auto&&... a) { CqAttendNibble(a...); },
      [](auto&&... a) { CqAttendNibbleRef(a...); });
}

TEST(CqAttendNibble, MatchesDequantiseThenAttend) {
  // k-means 4-bit values (4c4b, 2c4b, 8c4b) and residual 8-bit values (8c8b, 4c8b, 2c8b).
  const std::pair<int, int> configs[] = {{4, 4}, {2, 4}, {8, 4}, {8, 8}, {4, 8}, {2, 8}};
  for (auto [c, bits] : configs) {
    for (int hd : {64, 128}) {
      for (int G : {1, 4, 5}) {
        // Short ranges (direct key scores), long ones (key tables, several blocks, odd ends).
        for (auto [t0, t1] : {std::pair<int64_t, int64_t>{0, 1}, {3, 70}, {0, 700}, {129, 1000}}) {
          Check(c, bits, hd, G, t0, t1, false, false);
        }
        Check(c, bits, hd, G, 10, 400, true, false);
        Check(c, bits, hd, G, 200, 1300, false, true);
        Check(c, bits, hd, G, 255, 900, true, true);
      }
    }
  }
  Check(8, 8, 128, 4, 0, 4096, false, true);  // a whole decode range at B = 1
}

// Fast-scan keys (scores fused into the nibble kernel's rows) against dequantise-then-attend on
// the same keys token-major, within CqAttendFastScan's bound tanh(E / 2) * (max - min of the
// head's value table), plus the exact kernel's tolerance above.
void CheckFastScan(int c, int bits, int hd, int G, int64_t t0, int64_t t1, bool paged,
                   float spread) {
  testing::CheckBasisKernelFastScan<Fixture>(c, bits, hd, G, t0, t1, paged, spread,
                                             [](auto&&... a) { CqAttendNibbleFastScan(a...); });
}

TEST(CqAttendNibble, FastScanKeysWithinBoundOfExactKernel) {
  const std::pair<int, int> configs[] = {{4, 4}, {2, 4}, {8, 4}, {8, 8}, {4, 8}};
  for (auto [c, bits] : configs) {
    for (int G : {1, 4}) {
      for (auto [t0, t1] : {std::pair<int64_t, int64_t>{0, 1}, {3, 70}, {0, 700}, {129, 1300}}) {
        CheckFastScan(c, bits, 128, G, t0, t1, false, 3.0f);
      }
      CheckFastScan(c, bits, 64, G, 200, 1300, true, 3.0f);
      CheckFastScan(c, bits, 128, G, 0, 2048, true, 12.0f);  // peaked softmax
    }
  }
}

TEST(CqAttendNibble, RefusesUnsupportedHeads) {
  const Fixture f8(8, 8, 64, 16, 1), f4(4, 4, 64, 16, 1);
  std::vector<float> q(64, 0.1f);
  State s(1, 64);
  // 8-bit codes without residual bases, residual bases on 4-bit codes.
  EXPECT_THROW(CqAttendNibble(f8.view, nullptr, q.data(), 0, 16, s.view()), Error);
  EXPECT_THROW(CqAttendNibble(f4.view, f8.basis.data(), q.data(), 0, 16, s.view()), Error);
  // 4c4b at head dim 4: one 4-bit code per head, so head 1 starts mid-byte.
  const testing::CqFixture odd(4, 4, 4, 16, 1);
  State s4(1, 4);
  EXPECT_THROW(CqAttendNibble(odd.view, nullptr, q.data(), 0, 16, s4.view()), Error);
  EXPECT_STRNE(CqNibbleUnsupported(odd.view, nullptr), "");
  EXPECT_STREQ(CqNibbleUnsupported(f4.view, nullptr), "");
}

}  // namespace
}  // namespace cqkv
