#include "kernels/attn_cq_values.h"

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
#include "quant/additive.h"
#include "util/error.h"

namespace cqkv {
namespace {

using Paged = testing::CqPaged;
using State = testing::CqState;

// One KV head (the last of n_kv) of random codes, random key centroids and random additive value
// bases; v_table holds the bases' expansions in the channel-major layout CqAttendRef reads, so
// CqAttendRef is dequantise-then-attend with exactly the values the bases represent.
struct Fixture : testing::CqFixture {
  std::vector<float> basis;  // (groups, b + 1, c)
  const float* head_basis = nullptr;
  float max_abs_value = 0;

  Fixture(int c_, int bits_, int hd_, int64_t n_tokens, int seed, int n_kv_ = 2)
      : CqFixture(c_, bits_, hd_, n_tokens, seed, n_kv_) {
    std::mt19937 rng(seed + 1);
    std::normal_distribution<float> nd;
    const int64_t n_groups = view.n_groups, k = int64_t{1} << bits;
    basis.resize(static_cast<size_t>(n_groups * (bits + 1) * c));
    // Basis vectors of 1/sqrt(b) so values stay ~N(0, 2) whatever b.
    for (auto& x : basis) x = nd(rng) / std::sqrt(static_cast<float>(bits));
    std::vector<float> cent(static_cast<size_t>(k * c));
    for (int64_t g = 0; g < n_groups; ++g) {
      ExpandAdditive(basis.data() + g * (bits + 1) * c, bits, c, cent.data());
      for (int64_t code = 0; code < k; ++code) {
        for (int j = 0; j < c; ++j) {
          const float v = cent[code * c + j];
          v_table[(g * c + j) * k + code] = v;
          max_abs_value = std::max(max_abs_value, std::abs(v));
        }
      }
    }
    head_basis = basis.data() + int64_t{view.g0} * (bits + 1) * c;
  }
};

// The SIMD bit sums add each lane's weights in token order, as the definition does: bitwise equal.
TEST(AdditiveBitSums, EqualsTheScalarDefinitionBitwise) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> ud(0, 1);
  for (int64_t row_bytes : {8, 16, 32, 40}) {
    for (int heads : {1, 3, 4, 5, 8}) {
      for (int64_t n : {1, 7, 256}) {
        std::vector<uint8_t> rows(static_cast<size_t>(n * row_bytes));
        for (auto& b : rows) b = static_cast<uint8_t>(rng());
        std::vector<float> p(static_cast<size_t>(heads * n));
        for (auto& x : p) x = ud(rng);
        testing::ForEachTarget([&] {
          std::vector<float> a(static_cast<size_t>(heads * row_bytes * 8), 0.0f), r = a;
          AdditiveBitSums(rows.data(), row_bytes, row_bytes, n, p.data(), n, heads, a.data());
          AdditiveBitSumsRef(rows.data(), row_bytes, row_bytes, n, p.data(), n, heads, r.data());
          ASSERT_EQ(a, r) << row_bytes << " bytes, " << heads << " heads, n=" << n;
        });
      }
    }
  }
  // Closed form: one head, all-ones rows sum every weight into every lane.
  std::vector<uint8_t> ones(3 * 8, 0xff);
  const std::vector<float> w = {0.5f, 0.25f, 2.0f};
  std::vector<float> s(64, 1.0f);
  AdditiveBitSums(ones.data(), 8, 8, 3, w.data(), 3, 1, s.data());
  for (float x : s) EXPECT_EQ(x, 3.75f);
}

// Kernel (every SIMD target) and its scalar reference against dequantise-then-attend
// (testing::CheckBasisKernel).
void Check(int c, int bits, int hd, int G, int64_t t0, int64_t t1, bool callback, bool paged) {
  testing::CheckBasisKernel<Fixture>(
      c, bits, hd, G, t0, t1, callback, paged, [](auto&&... a) { CqAttendAdditive(a...); },
      [](auto&&... a) { CqAttendAdditiveRef(a...); });
}

TEST(CqAttendAdditive, MatchesDequantiseThenAttend) {
  const std::pair<int, int> configs[] = {{4, 8}, {8, 8}, {4, 4}, {8, 4}, {2, 4}, {8, 2}, {2, 8}};
  for (auto [c, bits] : configs) {
    for (int hd : {64, 128}) {
      for (int G : {1, 4, 5, 8}) {
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
}

// Fast-scan keys (fused scoring into the additive kernel's rows) against dequantise-then-attend
// on the same keys token-major, within CqAttendFastScan's bound: tanh(E / 2) * (max - min of the
// head's value centroid channels), E the largest score bound, plus the 1e-5 relative slack of
// the exact kernels.
void CheckFastScan(int c, int bits, int hd, int G, int64_t t0, int64_t t1, bool paged,
                   float spread) {
  testing::CheckBasisKernelFastScan<Fixture>(c, bits, hd, G, t0, t1, paged, spread,
                                             [](auto&&... a) { CqAttendAdditiveFastScan(a...); });
}

TEST(CqAttendAdditive, FastScanKeysWithinBoundOfExactKernel) {
  const std::pair<int, int> configs[] = {{4, 8}, {8, 8}, {4, 4}, {8, 4}};
  for (auto [c, bits] : configs) {
    for (int G : {1, 4, 8}) {
      for (auto [t0, t1] : {std::pair<int64_t, int64_t>{0, 1}, {3, 70}, {0, 700}, {129, 1300}}) {
        CheckFastScan(c, bits, 128, G, t0, t1, false, 3.0f);
      }
      CheckFastScan(c, bits, 64, G, 200, 1300, true, 3.0f);
      CheckFastScan(c, bits, 128, G, 0, 2048, true, 12.0f);  // peaked softmax
    }
  }
}

TEST(CqAttendAdditive, RefusesCodesOffByteBoundaries) {
  // 4c4b at head dim 4: one 4-bit code per head, so head 1 starts mid-byte.
  const Fixture f(4, 4, 4, 8, 1);
  State a(1, 4);
  std::vector<float> q(4, 0.1f);
  EXPECT_THROW(CqAttendAdditive(f.view, f.head_basis, q.data(), 0, 8, a.view()), Error);
}

}  // namespace
}  // namespace cqkv
