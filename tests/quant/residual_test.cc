#include "quant/residual.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "quant/expanded_objective_testing.h"
#include "quant/kmeans.h"
#include "util/error.h"

namespace cqkv {
namespace {

// The fit's objective recomputed by brute force from the expanded table.
double Objective(const std::vector<float>& x, const std::vector<float>& w, int d,
                 const std::vector<float>& stages, int bits) {
  std::vector<float> cent(static_cast<size_t>(d) << bits);
  ExpandResidual(stages.data(), bits, d, cent.data());
  return testing::NearestCentroidObjective(x, w, d, cent);
}

TEST(ExpandResidual, AddsTheStageVectorsTheCodeHalvesSelect) {
  // b = 2: A = {(1, 2), (3, 4)}, B = {(10, 0), (0, 100)}; code = 2 i + j.
  const std::vector<float> stages = {1, 2, 3, 4, 10, 0, 0, 100};
  std::vector<float> cent(8);
  ExpandResidual(stages.data(), 2, 2, cent.data());
  EXPECT_EQ(cent, (std::vector<float>{11, 2, 1, 102, 13, 4, 3, 104}));
}

// Data that is exactly A[i] + B[j] (every pair used) is reproduced with ~0 error, and the stages
// come back up to the ambiguity of the model: a permutation of each stage's rows and a common
// offset o (A + o, B - o). Stage A is spread 20x wider than B, so the k-means start already
// separates the A clusters and the exact answer is reachable; 8 random starts per case.
TEST(FitResidual, RecoversExactTwoStageData) {
  for (auto [d, bits] : {std::pair{4, 4}, std::pair{4, 8}, std::pair{8, 8}}) {
    const int h = 1 << (bits / 2);
    std::mt19937 rng(d * 100 + bits);
    std::normal_distribution<float> nd;
    std::vector<float> stages(2 * h * d);
    for (int r = 0; r < 2 * h; ++r) {
      for (int j = 0; j < d; ++j) stages[r * d + j] = nd(rng) * (r < h ? 20.0f : 1.0f);
    }
    std::vector<float> cent(static_cast<size_t>(d) << bits);
    ExpandResidual(stages.data(), bits, d, cent.data());
    const int n = 20 << bits;
    std::vector<float> x(static_cast<size_t>(n) * d);
    for (int i = 0; i < n; ++i) std::copy_n(&cent[(i % (1 << bits)) * d], d, &x[i * d]);
    ResidualParams p;
    p.bits = bits;
    p.n_init = 8;
    const ResidualResult r = FitResidual(ConstMat(x.data(), n, d), {}, p);
    double var = 0;
    for (float v : x) var += v * v / n;
    // Exact up to float rounding of the least-squares solution (~1e-7 relative).
    EXPECT_LT(r.objective, 1e-9 * var) << d << "c, " << bits << " bits";
    EXPECT_NEAR(Objective(x, {}, d, r.stages, bits), r.objective, 1e-6 * var);
    // The offset is the difference of the stage means (permutations keep means).
    std::vector<double> o(d, 0.0);
    for (int k = 0; k < h; ++k) {
      for (int j = 0; j < d; ++j) o[j] += (r.stages[k * d + j] - stages[k * d + j]) / h;
    }
    for (int stage = 0; stage < 2; ++stage) {
      std::vector<bool> used(h, false);
      for (int k = 0; k < h; ++k) {
        const float* got = &r.stages[(stage * h + k) * d];
        int match = -1;
        for (int t = 0; t < h && match < 0; ++t) {
          bool same = true;
          for (int j = 0; j < d; ++j) {
            const double want = stages[(stage * h + t) * d + j] + (stage == 0 ? o[j] : -o[j]);
            same &= std::fabs(got[j] - want) < 1e-3;
          }
          if (same && !used[t]) match = t;
        }
        ASSERT_GE(match, 0) << d << "c" << bits << "b stage " << stage << " row " << k;
        used[match] = true;
      }
    }
  }
}

// Each round is an exact assignment then the optimal stages for it (with a ridge towards the
// current ones), so the objective never rises; the reported objective is the true one and no
// worse than the k-means start (the first entry of the history).
TEST(FitResidual, ObjectiveNeverRisesAndIsTrue) {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  for (int d : {2, 4, 8}) {
    const int n = 4000;
    std::vector<float> x(static_cast<size_t>(n) * d), w(n);
    for (float& v : x) v = nd(rng);
    for (float& v : w) v = std::exp(nd(rng));
    ResidualParams p;
    const ResidualResult r = FitResidual(ConstMat(x.data(), n, d), w, p);
    ASSERT_GE(r.history.size(), 2u) << d;
    for (size_t i = 1; i < r.history.size(); ++i) {
      // 1e-6 relative: the stages are rounded to float before each assignment.
      EXPECT_LE(r.history[i], r.history[i - 1] * (1 + 1e-6)) << d << "c round " << i;
    }
    EXPECT_LT(r.objective, r.history.front()) << d;  // ALS improves on the k-means start
    EXPECT_EQ(r.objective, *std::min_element(r.history.begin(), r.history.end()));
    EXPECT_NEAR(Objective(x, w, d, r.stages, 8), r.objective, 1e-5 * r.objective);
    // 32 free vectors cannot beat 256 (k-means, here with the same data and weights) by much,
    // and must beat a single 16-centroid stage.
    KMeansParams kp;
    kp.k = 16;
    EXPECT_LT(r.objective, KMeans(ConstMat(x.data(), n, d), w, kp).objective) << d;
  }
}

// A heavy row (weight 1e4 against 1 for 999 others) is reproduced far better than with uniform
// weights: the weighted objective is what the fit minimises.
TEST(FitResidual, HeavyRowsAreReproducedBetter) {
  std::mt19937 rng(5);
  std::normal_distribution<float> nd;
  const int n = 1000, d = 4;
  std::vector<float> x(static_cast<size_t>(n) * d);
  for (float& v : x) v = nd(rng);
  for (int j = 0; j < d; ++j) x[j] = 2.5f * (j % 2 ? -1 : 1);  // row 0: an outlier corner
  std::vector<float> w(n, 1.0f);
  w[0] = 1e4f;
  ResidualParams p;
  p.bits = 4;
  auto row0_error = [&](const ResidualResult& r) {
    std::vector<int32_t> code(1);
    std::vector<float> cent(16 * d), dist(1);
    ExpandResidual(r.stages.data(), 4, d, cent.data());
    AssignNearest(ConstMat(x.data(), 1, d), ConstMat(cent.data(), 16, d), code.data(), dist.data());
    return dist[0];
  };
  const float uniform = row0_error(FitResidual(ConstMat(x.data(), n, d), {}, p));
  const float heavy = row0_error(FitResidual(ConstMat(x.data(), n, d), w, p));
  EXPECT_GT(uniform, 0.1f);
  EXPECT_LT(heavy, 0.01f * uniform);
}

TEST(FitResidual, RefusesBadInput) {
  std::vector<float> x = {0, 1, NAN, 3};
  ResidualParams p;
  p.bits = 2;
  EXPECT_THROW(FitResidual(ConstMat(x.data(), 4, 1), {}, p), Error);
  x[2] = 2;
  const std::vector<float> zero = {0, 0, 0, 0}, neg = {1, -1, 1, 1};
  EXPECT_THROW(FitResidual(ConstMat(x.data(), 4, 1), zero, p), Error);
  EXPECT_THROW(FitResidual(ConstMat(x.data(), 4, 1), neg, p), Error);
  EXPECT_NO_THROW(FitResidual(ConstMat(x.data(), 4, 1), {}, p));
  for (int bits : {3, 7, 14}) {
    p.bits = bits;
    EXPECT_THROW(FitResidual(ConstMat(x.data(), 4, 1), {}, p), Error) << bits;
  }
}

}  // namespace
}  // namespace cqkv
