#include "kv/tq_qjl.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace cqkv {
namespace {

double DotD(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += double(a[i]) * b[i];
  return s;
}

// The estimate |r| sqrt(pi/2)/d <S q, z> over N = 4000 independent draws of S (one seed each):
// its mean must lie within 4 standard errors of <q, r> (a false failure has probability ~6e-5).
// The test has power: the standard error is below 2% of <q, r> here, so dropping the sqrt(pi/2)
// factor (a 20% bias) or using sign(S q) on both sides would fail it.
TEST(QjlSketch, InnerProductEstimateIsUnbiased) {
  const int d = 64, n = 4000;
  std::mt19937 rng(11);
  std::normal_distribution<float> nd;
  for (int trial = 0; trial < 3; ++trial) {
    std::vector<float> q(d), r(d);
    for (int i = 0; i < d; ++i) {
      q[i] = nd(rng);
      r[i] = 0.3f * (0.7f * q[i] + 0.7f * nd(rng));  // correlated, so <q, r> is well away from 0
    }
    const double truth = DotD(q, r), rnorm = std::sqrt(DotD(r, r));
    double sum = 0, sum2 = 0;
    std::vector<uint8_t> bits(d / 8);
    std::vector<float> sq(d), z(d);
    for (int s = 0; s < n; ++s) {
      const QjlSketch sk(1, d, 1000 + s + trial * n);
      sk.Signs(0, r.data(), bits.data());
      sk.Project(0, q.data(), sq.data());
      sk.SignsToFloats(bits.data(), static_cast<float>(rnorm * sk.EstimatorScale()), z.data());
      const double est = DotD(sq, z);
      sum += est;
      sum2 += est * est;
    }
    const double mean = sum / n, var = sum2 / n - mean * mean, se = std::sqrt(var / n);
    EXPECT_NEAR(mean, truth, 4 * se) << "trial " << trial << " se " << se;
    EXPECT_LT(se, 0.02 * std::fabs(truth)) << "test lacks power";
  }
}

// S^T w is the transpose of Project: <S q, w> = <q, S^T w>.
TEST(QjlSketch, TransposeIsTheAdjoint) {
  const int d = 32;
  const QjlSketch sk(2, d, 5);
  std::mt19937 rng(2);
  std::normal_distribution<float> nd;
  std::vector<float> q(d), w(d), sq(d), stw(d);
  for (int i = 0; i < d; ++i) q[i] = nd(rng), w[i] = nd(rng);
  sk.Project(1, q.data(), sq.data());
  sk.ProjectTransposed(1, w.data(), stw.data());
  EXPECT_NEAR(DotD(sq, w), DotD(q, stw), 1e-4 * (1 + std::fabs(DotD(sq, w))));
}

}  // namespace
}  // namespace cqkv
