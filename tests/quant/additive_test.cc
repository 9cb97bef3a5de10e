#include "quant/additive.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "quant/expanded_objective_testing.h"
#include "util/error.h"

namespace cqkv {
namespace {

// The fit's objective recomputed by brute force from the expanded table.
double Objective(const std::vector<float>& x, const std::vector<float>& w, int d,
                 const std::vector<float>& basis, int bits) {
  std::vector<float> cent(static_cast<size_t>(d) << bits);
  ExpandAdditive(basis.data(), bits, d, cent.data());
  return testing::NearestCentroidObjective(x, w, d, cent);
}

TEST(ExpandAdditive, SumsTheSelectedBasisVectors) {
  // b0 = (1, 2), B_0 = (10, 0), B_1 = (0, 100).
  const std::vector<float> basis = {1, 2, 10, 0, 0, 100};
  std::vector<float> cent(8);
  ExpandAdditive(basis.data(), 2, 2, cent.data());
  EXPECT_EQ(cent, (std::vector<float>{1, 2, 11, 2, 1, 102, 11, 102}));
}

// Data that an additive basis represents exactly is recovered with ~0 error, including every
// combination of bits (not just single bits), and the reported objective is the true one.
TEST(FitAdditive, RecoversAnExactlyRepresentableBasis) {
  for (auto [d, bits] : {std::pair{4, 3}, std::pair{4, 4}, std::pair{8, 4}}) {
    std::mt19937 rng(d * 100 + bits);
    std::normal_distribution<float> nd;
    std::vector<float> basis((bits + 1) * d);
    for (float& v : basis) v = nd(rng);
    std::vector<float> cent(static_cast<size_t>(d) << bits);
    ExpandAdditive(basis.data(), bits, d, cent.data());
    const int n = 2000;
    std::vector<float> x(static_cast<size_t>(n) * d);
    for (int i = 0; i < n; ++i) {
      const int code = static_cast<int>(rng() % (1u << bits));
      std::copy_n(&cent[code * d], d, &x[i * d]);
    }
    AdditiveParams p;
    p.bits = bits;
    p.n_init = 8;
    const AdditiveResult r = FitAdditive(ConstMat(x.data(), n, d), {}, p);
    double var = 0;
    for (float v : x) var += v * v / n;
    // The fit is exact up to float rounding of the least-squares solution (~1e-7 relative).
    EXPECT_LT(r.objective, 1e-9 * var) << d << "c, " << bits << " bits";
    EXPECT_NEAR(Objective(x, {}, d, r.basis, bits), r.objective, 1e-6 * var);
  }
}

// One bit is a weighted 2-means; x in {0, 1, 5}: uniform weights put the levels at {0.5, 5}
// (objective (0.25 + 0.25) / 3), weights (100, 100, 1) split {0} | {1, 5} with the upper level
// at the weighted mean 105/101 (objective (100 (4/101)^2 + (400/101)^2) / 201): Fisher weights
// move the fit towards the heavy rows as they should.
TEST(FitAdditive, WeightsMoveTheFitToHeavyRows) {
  const std::vector<float> x = {0, 1, 5};
  AdditiveParams p;
  p.bits = 1;
  const AdditiveResult u = FitAdditive(ConstMat(x.data(), 3, 1), {}, p);
  EXPECT_NEAR(u.objective, 0.5 / 3, 1e-6);
  EXPECT_NEAR(std::min(u.basis[0], u.basis[0] + u.basis[1]), 0.5f, 1e-5);
  EXPECT_NEAR(std::max(u.basis[0], u.basis[0] + u.basis[1]), 5.0f, 1e-5);
  const std::vector<float> w = {100, 100, 1};
  const AdditiveResult f = FitAdditive(ConstMat(x.data(), 3, 1), w, p);
  const double hi = 105.0 / 101;
  EXPECT_NEAR(f.objective, (100 * (1 - hi) * (1 - hi) + (5 - hi) * (5 - hi)) / 201, 1e-6);
  EXPECT_NEAR(std::min(f.basis[0], f.basis[0] + f.basis[1]), 0.0f, 1e-5);
  EXPECT_NEAR(std::max(f.basis[0], f.basis[0] + f.basis[1]), hi, 1e-5);
}

// On data with no additive structure the fit is a local optimum: its reported objective is the
// true one, restarts never hurt, and more bits help.
TEST(FitAdditive, ObjectiveIsTrueAndImprovesWithBitsAndRestarts) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  const int n = 3000, d = 4;
  std::vector<float> x(n * d), w(n);
  for (float& v : x) v = nd(rng);
  for (float& v : w) v = std::exp(nd(rng));
  double prev = INFINITY;
  for (int bits : {2, 4, 6, 8}) {
    AdditiveParams p;
    p.bits = bits;
    p.n_init = 1;
    const AdditiveResult one = FitAdditive(ConstMat(x.data(), n, d), w, p);
    p.n_init = 3;
    const AdditiveResult three = FitAdditive(ConstMat(x.data(), n, d), w, p);
    EXPECT_LE(three.objective, one.objective);
    EXPECT_NEAR(Objective(x, w, d, three.basis, bits), three.objective, 1e-5 * three.objective);
    EXPECT_LT(three.objective, prev) << bits;
    prev = three.objective;
  }
}

TEST(FitAdditive, RefusesBadInput) {
  std::vector<float> x = {0, 1, NAN};
  AdditiveParams p;
  p.bits = 1;
  EXPECT_THROW(FitAdditive(ConstMat(x.data(), 3, 1), {}, p), Error);
  x[2] = 2;
  const std::vector<float> zero = {0, 0, 0}, neg = {1, -1, 1};
  EXPECT_THROW(FitAdditive(ConstMat(x.data(), 3, 1), zero, p), Error);
  EXPECT_THROW(FitAdditive(ConstMat(x.data(), 3, 1), neg, p), Error);
  p.bits = 13;
  EXPECT_THROW(FitAdditive(ConstMat(x.data(), 3, 1), {}, p), Error);
}

}  // namespace
}  // namespace cqkv
