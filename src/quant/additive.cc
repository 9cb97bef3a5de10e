#include "quant/additive.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "quant/additive_als.h"
#include "util/error.h"

namespace cqkv {
namespace {

// Weighted 2-means of the residuals r (rows of `data`, d columns each) started from a split
// along `dir`: sets lo, hi (d each) and side[i] (0 or 1). A side that ends up empty keeps
// lo == hi, a zero basis vector.
void TwoMeans(const WeightedRows& data, const std::vector<double>& r, int d,
              const std::vector<double>& dir, std::vector<double>& lo, std::vector<double>& hi,
              std::vector<uint8_t>& side) {
  const size_t n = data.rows.size();
  std::vector<double> mean(d, 0.0);
  for (size_t i = 0; i < n; ++i) {
    for (int j = 0; j < d; ++j) mean[j] += data.w[i] * r[i * d + j];
  }
  for (int j = 0; j < d; ++j) mean[j] /= data.total;
  for (size_t i = 0; i < n; ++i) {
    double s = 0;
    for (int j = 0; j < d; ++j) s += (r[i * d + j] - mean[j]) * dir[j];
    side[i] = s > 0;
  }
  for (int iter = 0; iter < 20; ++iter) {
    double wl = 0, wh = 0;
    std::fill(lo.begin(), lo.end(), 0.0);
    std::fill(hi.begin(), hi.end(), 0.0);
    for (size_t i = 0; i < n; ++i) {
      std::vector<double>& c = side[i] ? hi : lo;
      (side[i] ? wh : wl) += data.w[i];
      for (int j = 0; j < d; ++j) c[j] += data.w[i] * r[i * d + j];
    }
    for (int j = 0; j < d; ++j) {
      lo[j] = wl > 0 ? lo[j] / wl : mean[j];
      hi[j] = wh > 0 ? hi[j] / wh : mean[j];
    }
    bool changed = false;
    for (size_t i = 0; i < n; ++i) {
      double dl = 0, dh = 0;
      for (int j = 0; j < d; ++j) {
        dl += (r[i * d + j] - lo[j]) * (r[i * d + j] - lo[j]);
        dh += (r[i * d + j] - hi[j]) * (r[i * d + j] - hi[j]);
      }
      const uint8_t s = dh < dl;
      changed |= s != side[i];
      side[i] = s;
    }
    if (!changed) break;
  }
}

// Top principal direction of the weighted residuals (power iteration), or a random unit vector
// when `random` (perturbed restarts).
std::vector<double> SplitDirection(const WeightedRows& data, const std::vector<double>& r, int d,
                                   bool random, std::mt19937_64& rng) {
  std::normal_distribution<double> nd;
  std::vector<double> u(d);
  for (double& v : u) v = nd(rng);
  if (!random) {
    std::vector<double> mean(d, 0.0), cov(static_cast<size_t>(d) * d, 0.0);
    const size_t n = data.rows.size();
    for (size_t i = 0; i < n; ++i) {
      for (int j = 0; j < d; ++j) mean[j] += data.w[i] * r[i * d + j] / data.total;
    }
    for (size_t i = 0; i < n; ++i) {
      for (int a = 0; a < d; ++a) {
        const double ra = r[i * d + a] - mean[a];
        for (int b = 0; b < d; ++b) cov[a * d + b] += data.w[i] * ra * (r[i * d + b] - mean[b]);
      }
    }
    for (int it = 0; it < 50; ++it) {
      std::vector<double> v(d, 0.0);
      for (int a = 0; a < d; ++a) {
        for (int b = 0; b < d; ++b) v[a] += cov[a * d + b] * u[b];
      }
      double norm = 0;
      for (double x : v) norm += x * x;
      if (!(norm > 0)) break;  // no spread left: any direction
      for (int a = 0; a < d; ++a) u[a] = v[a] / std::sqrt(norm);
    }
  }
  double norm = 0;
  for (double x : u) norm += x * x;
  for (double& x : u) x /= std::sqrt(norm);
  return u;
}

// Greedy residual start: b0 = 0, then each bit a weighted 2-means of the residual (lo joins b0,
// hi - lo becomes B_j).
std::vector<double> GreedyStart(const WeightedRows& data, int bits, int d, bool random,
                                std::mt19937_64& rng) {
  const size_t n = data.rows.size();
  std::vector<double> basis(static_cast<size_t>(bits + 1) * d, 0.0), r(n * d);
  for (size_t i = 0; i < n; ++i) {
    for (int j = 0; j < d; ++j) r[i * d + j] = data.x(data.rows[i], j);
  }
  std::vector<double> lo(d), hi(d);
  std::vector<uint8_t> side(n);
  for (int b = 0; b < bits; ++b) {
    TwoMeans(data, r, d, SplitDirection(data, r, d, random, rng), lo, hi, side);
    for (int j = 0; j < d; ++j) {
      basis[j] += lo[j];
      basis[(b + 1) * d + j] = hi[j] - lo[j];
    }
    for (size_t i = 0; i < n; ++i) {
      for (int j = 0; j < d; ++j) r[i * d + j] -= side[i] ? hi[j] : lo[j];
    }
  }
  return basis;
}

// Additive codes as sums of basis rows: code p selects row 0 (b0), then 1 + j for each set bit j
// in ascending order, the order ExpandAdditive adds them in.
SumLayout AdditiveLayout(int bits) {
  SumLayout l;
  l.n_basis = bits + 1;
  l.offsets.push_back(0);
  for (int pat = 0; pat < (1 << bits); ++pat) {
    l.terms.push_back(0);
    for (int b = 0; b < bits; ++b) {
      if (pat >> b & 1) l.terms.push_back(b + 1);
    }
    l.offsets.push_back(static_cast<int>(l.terms.size()));
  }
  return l;
}

}  // namespace

void ExpandAdditive(const float* basis, int bits, int d, float* centroids) {
  for (int code = 0; code < (1 << bits); ++code) {
    float* c = centroids + static_cast<int64_t>(code) * d;
    std::copy_n(basis, d, c);
    for (int b = 0; b < bits; ++b) {
      if (!(code >> b & 1)) continue;
      for (int j = 0; j < d; ++j) c[j] += basis[(b + 1) * d + j];
    }
  }
}

AdditiveResult FitAdditive(ConstMat x, std::span<const float> weights, const AdditiveParams& p) {
  CQKV_CHECK(p.bits >= 1 && p.bits <= 12, "additive fit: bits must be in 1..12, got {}", p.bits);
  CQKV_CHECK(p.max_iter >= 0 && p.n_init >= 1 && p.tol >= 0,
             "additive fit: bad parameters (max_iter {}, n_init {}, tol {})", p.max_iter, p.n_init,
             p.tol);
  const WeightedRows data = PrepareWeightedRows(x, weights, "additive fit");
  const SumLayout layout = AdditiveLayout(p.bits);
  const int d = static_cast<int>(x.cols);
  std::mt19937_64 rng(p.seed);
  AdditiveResult best;
  best.objective = INFINITY;
  for (int run = 0; run < p.n_init; ++run) {
    SumFit r = RefineSum(data, layout, GreedyStart(data, p.bits, d, /*random=*/run > 0, rng),
                         p.max_iter, p.tol);
    if (r.objective < best.objective) best = {std::move(r.basis), r.objective, r.iterations};
  }
  return best;
}

}  // namespace cqkv
