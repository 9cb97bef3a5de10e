#include "kv/tq_lloyd_max.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "util/error.h"

namespace cqkv {
namespace {

double Pdf(double x) { return std::exp(-0.5 * x * x) / std::sqrt(2 * std::numbers::pi); }
double Cdf(double x) { return 0.5 * std::erfc(-x / std::numbers::sqrt2); }

// Inverse normal CDF by bisection: only used once per level for the starting point.
double Quantile(double p) {
  double lo = -40, hi = 40;
  for (int i = 0; i < 200; ++i) {
    const double mid = 0.5 * (lo + hi);
    (Cdf(mid) < p ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

}  // namespace

uint32_t LloydMaxTable::Code(double x) const {
  return static_cast<uint32_t>(std::upper_bound(thresholds.begin(), thresholds.end(), x) -
                               thresholds.begin());
}

LloydMaxTable LloydMaxGaussian(int bits) {
  CQKV_CHECK(bits >= 1 && bits <= 8, "Lloyd-Max table: {} bits is outside 1..8", bits);
  const int n = 1 << bits;
  LloydMaxTable t;
  t.levels.resize(n);
  t.thresholds.resize(n - 1);
  for (int i = 0; i < n; ++i) t.levels[i] = Quantile((i + 0.5) / n);
  // Lloyd: boundaries at midpoints, levels at the conditional means of their cells,
  // E[X | a < X < b] = (pdf(a) - pdf(b)) / (cdf(b) - cdf(a)).
  for (int iter = 0; iter < 100000; ++iter) {
    for (int i = 0; i + 1 < n; ++i) t.thresholds[i] = 0.5 * (t.levels[i] + t.levels[i + 1]);
    double moved = 0;
    for (int i = 0; i < n; ++i) {
      const double a = i == 0 ? -INFINITY : t.thresholds[i - 1];
      const double b = i == n - 1 ? INFINITY : t.thresholds[i];
      const double pa = std::isinf(a) ? 0.0 : Pdf(a), pb = std::isinf(b) ? 0.0 : Pdf(b);
      const double mean = (pa - pb) / (Cdf(b) - Cdf(a));
      moved = std::max(moved, std::fabs(mean - t.levels[i]));
      t.levels[i] = mean;
    }
    if (moved < 1e-12) break;
  }
  for (int i = 0; i + 1 < n; ++i) t.thresholds[i] = 0.5 * (t.levels[i] + t.levels[i + 1]);
  // MSE in closed form per cell: E[X^2] - 2 c E[X] + c^2 P over (a, b), with
  // int x^2 phi = (cdf(b) - cdf(a)) + a pdf(a) - b pdf(b).
  for (int i = 0; i < n; ++i) {
    const double a = i == 0 ? -INFINITY : t.thresholds[i - 1];
    const double b = i == n - 1 ? INFINITY : t.thresholds[i];
    const double pa = std::isinf(a) ? 0.0 : Pdf(a), pb = std::isinf(b) ? 0.0 : Pdf(b);
    const double apa = std::isinf(a) ? 0.0 : a * pa, bpb = std::isinf(b) ? 0.0 : b * pb;
    const double p = Cdf(b) - Cdf(a), m1 = pa - pb, m2 = p + apa - bpb;
    const double c = t.levels[i];
    t.mse += m2 - 2 * c * m1 + c * c * p;
  }
  return t;
}

}  // namespace cqkv
