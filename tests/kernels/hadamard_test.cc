#include "kernels/hadamard.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernels/hwy_targets_testing.h"
#include "util/error.h"

namespace cqkv {
namespace {

std::vector<float> RandomRows(int64_t rows, int64_t n, int64_t stride, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  std::vector<float> x(static_cast<size_t>(rows * stride));
  for (auto& v : x) v = nd(rng);
  (void)n;
  return x;
}

// H e_j is column j of the Sylvester matrix, entries (-1)^popcount(i & j) / sqrt(n): a closed
// form independent of the butterfly order. Exact up to the one rounding of 1/sqrt(n) (1e-6).
TEST(Hadamard, UnitVectorsGiveSylvesterColumns) {
  testing::ForEachTarget([] {
    for (int64_t n : {1, 2, 4, 8, 16, 32, 64, 128, 256, 512}) {
      for (int64_t j : {int64_t{0}, n / 3, n - 1}) {
        std::vector<float> x(static_cast<size_t>(n), 0.0f);
        x[j] = 1.0f;
        Fwht(x.data(), 1, n, n);
        for (int64_t i = 0; i < n; ++i) {
          const double want =
              ((__builtin_popcountll(uint64_t(i & j)) & 1) ? -1.0 : 1.0) / std::sqrt(double(n));
          ASSERT_NEAR(x[i], want, 1e-6) << "n=" << n << " j=" << j << " i=" << i;
        }
      }
    }
  });
}

// The vector butterflies against the double-precision reference: both compute the same sums,
// the vector path in fp32 with log2(n) rounded stages, so the error per element stays below
// ~log2(n) * eps * |x|_2; the bound is 1e-6 * log2(2n) * |x|_2, ~10x that. Rows are strided.
TEST(Hadamard, VectorMatchesReferenceOnStridedRows) {
  testing::ForEachTarget([] {
    for (int64_t n : {1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096}) {
      const int64_t rows = 3, stride = n + 5;
      auto x = RandomRows(rows, n, stride, static_cast<uint32_t>(n));
      auto ref = x;
      Fwht(x.data(), rows, n, stride);
      FwhtRef(ref.data(), rows, n, stride);
      for (int64_t r = 0; r < rows; ++r) {
        double norm = 0;
        for (int64_t i = 0; i < n; ++i) norm += double(ref[r * stride + i]) * ref[r * stride + i];
        const double tol = 1e-6 * std::log2(2.0 * n) * std::sqrt(norm);
        for (int64_t i = 0; i < n; ++i) {
          ASSERT_NEAR(x[r * stride + i], ref[r * stride + i], tol) << "n=" << n << " r=" << r;
        }
        // The stride gap is left alone.
        for (int64_t i = n; i < stride && r + 1 < rows; ++i) {
          ASSERT_EQ(x[r * stride + i], ref[r * stride + i]);
        }
      }
    }
  });
}

// Orthonormal and symmetric: H H x = x and |H x| = |x| (fp32, relative 1e-5).
TEST(Hadamard, IsItsOwnInverseAndKeepsNorms) {
  for (int64_t n : {8, 64, 128, 512}) {
    auto x = RandomRows(1, n, n, 7);
    const auto orig = x;
    Fwht(x.data(), 1, n, n);
    double n0 = 0, n1 = 0;
    for (int64_t i = 0; i < n; ++i) {
      n0 += double(orig[i]) * orig[i];
      n1 += double(x[i]) * x[i];
    }
    EXPECT_NEAR(n1, n0, 1e-5 * n0);
    Fwht(x.data(), 1, n, n);
    for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(x[i], orig[i], 1e-5 * (1 + std::fabs(orig[i])));
  }
}

TEST(Hadamard, RejectsOtherLengths) {
  for (int64_t n : {0, 3, 48, 96, 8192}) {
    std::vector<float> x(8192);
    try {
      Fwht(x.data(), 1, n, n);
      ADD_FAILURE() << "no error for n=" << n;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("power of two"), std::string::npos) << e.what();
    }
  }
  try {
    CheckHadamardSize(48, "KV format 'int4-token:hadamard'");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'int4-token:hadamard'"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("48"), std::string::npos);
  }
}

}  // namespace
}  // namespace cqkv
