#include "quant/additive.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "quant/kmeans.h"
#include "util/error.h"

namespace cqkv {
namespace {

// Rows with their weights (uniform when none were given); zero-weight rows are dropped.
struct Data {
  ConstMat x;
  std::vector<int64_t> rows;  // rows with w > 0
  std::vector<double> w;      // their weights
  double total = 0;
};

Data Prepare(ConstMat x, std::span<const float> weights) {
  Data d{x, {}, {}, 0};
  for (int64_t i = 0; i < x.rows; ++i) {
    for (int64_t j = 0; j < x.cols; ++j) {
      CQKV_CHECK(std::isfinite(x(i, j)), "additive fit: data row {} has a non-finite value", i);
    }
    const double w = weights.empty() ? 1.0 : weights[i];
    CQKV_CHECK(std::isfinite(w) && w >= 0, "additive fit: weight {} of row {} is not >= 0", w, i);
    if (w == 0) continue;
    d.rows.push_back(i);
    d.w.push_back(w);
    d.total += w;
  }
  CQKV_CHECK(!d.rows.empty(), "additive fit: all {} weights are zero", x.rows);
  return d;
}

// Weighted 2-means of the residuals r (rows of `data`, d columns each) started from a split
// along `dir`: sets lo, hi (d each) and side[i] (0 or 1). A side that ends up empty keeps
// lo == hi, a zero basis vector.
void TwoMeans(const Data& data, const std::vector<double>& r, int d, const std::vector<double>& dir,
              std::vector<double>& lo, std::vector<double>& hi, std::vector<uint8_t>& side) {
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
std::vector<double> SplitDirection(const Data& data, const std::vector<double>& r, int d,
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
std::vector<double> GreedyStart(const Data& data, int bits, int d, bool random,
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

// Solves (M + lambda I) X = R + lambda * prev for X ((m, d), M (m, m) symmetric positive
// semi-definite) by Cholesky; false (X untouched) if it is numerically singular.
bool SolveRidge(std::vector<double> M, std::vector<double> R, const std::vector<double>& prev,
                int m, int d, std::vector<double>& X) {
  double trace = 0;
  for (int a = 0; a < m; ++a) trace += M[a * m + a];
  const double lambda = 1e-9 * trace / m + 1e-300;
  for (int a = 0; a < m; ++a) {
    M[a * m + a] += lambda;
    for (int j = 0; j < d; ++j) R[a * d + j] += lambda * prev[a * d + j];
  }
  for (int a = 0; a < m; ++a) {  // M = L L^T in place (lower triangle)
    for (int b = 0; b <= a; ++b) {
      double s = M[a * m + b];
      for (int k = 0; k < b; ++k) s -= M[a * m + k] * M[b * m + k];
      if (a == b) {
        if (!(s > 0)) return false;
        M[a * m + a] = std::sqrt(s);
      } else {
        M[a * m + b] = s / M[b * m + b];
      }
    }
  }
  for (int j = 0; j < d; ++j) {
    std::vector<double> y(m);
    for (int a = 0; a < m; ++a) {
      double s = R[a * d + j];
      for (int k = 0; k < a; ++k) s -= M[a * m + k] * y[k];
      y[a] = s / M[a * m + a];
    }
    for (int a = m - 1; a >= 0; --a) {
      double s = y[a];
      for (int k = a + 1; k < m; ++k) s -= M[k * m + a] * X[k * d + j];
      X[a * d + j] = s / M[a * m + a];
    }
  }
  return true;
}

// One run of alternating least squares from `basis` (double, (bits + 1, d)); returns the float
// basis reached and its objective.
AdditiveResult Refine(const Data& data, int bits, int d, std::vector<double> basis,
                      const AdditiveParams& p) {
  const int K = 1 << bits, m = bits + 1;
  const size_t n = data.rows.size();
  std::vector<float> x(n * d), table(static_cast<size_t>(K) * d), table_t(table.size()), dist(n);
  for (size_t i = 0; i < n; ++i) {
    for (int j = 0; j < d; ++j) x[i * d + j] = data.x(data.rows[i], j);
  }
  std::vector<int32_t> code(n);
  AdditiveResult best;
  best.objective = INFINITY;
  std::vector<float> fbasis(basis.size());
  for (int iter = 0;; ++iter) {
    for (size_t i = 0; i < basis.size(); ++i) fbasis[i] = static_cast<float>(basis[i]);
    ExpandAdditive(fbasis.data(), bits, d, table.data());
    TransposeCentroids(ConstMat(table.data(), K, d), table_t.data());
    AssignNearestT(ConstMat(x.data(), static_cast<int64_t>(n), d), ConstMat(table_t.data(), d, K),
                   code.data(), dist.data());
    double obj = 0;
    for (size_t i = 0; i < n; ++i) obj += data.w[i] * dist[i];
    obj /= data.total;
    const double prev = best.objective;
    if (obj < best.objective) {
      best.objective = obj;
      best.basis = fbasis;
      best.iterations = iter;
    }
    if (iter >= p.max_iter || (iter > 0 && (!(obj < prev) || prev - obj <= p.tol * prev))) break;
    // Normal equations over patterns: a_p = (1, bit_0(p), ..., bit_{b-1}(p)).
    std::vector<double> wp(K, 0.0), xp(static_cast<size_t>(K) * d, 0.0);
    for (size_t i = 0; i < n; ++i) {
      wp[code[i]] += data.w[i];
      for (int j = 0; j < d; ++j) xp[code[i] * d + j] += data.w[i] * x[i * d + j];
    }
    std::vector<double> M(static_cast<size_t>(m) * m, 0.0), R(static_cast<size_t>(m) * d, 0.0);
    for (int pat = 0; pat < K; ++pat) {
      if (wp[pat] == 0) continue;
      int a_idx[17], na = 0;
      a_idx[na++] = 0;
      for (int b = 0; b < bits; ++b) {
        if (pat >> b & 1) a_idx[na++] = b + 1;
      }
      for (int a = 0; a < na; ++a) {
        for (int b = 0; b < na; ++b) M[a_idx[a] * m + a_idx[b]] += wp[pat];
        for (int j = 0; j < d; ++j) R[a_idx[a] * d + j] += xp[pat * d + j];
      }
    }
    std::vector<double> next = basis;
    if (!SolveRidge(M, R, basis, m, d, next)) break;
    basis = next;
  }
  return best;
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
  CQKV_CHECK(x.rows >= 1 && x.cols >= 1, "additive fit: empty data ({} x {})", x.rows, x.cols);
  CQKV_CHECK(weights.empty() || static_cast<int64_t>(weights.size()) == x.rows,
             "additive fit: {} weights for {} rows", weights.size(), x.rows);
  const Data data = Prepare(x, weights);
  const int d = static_cast<int>(x.cols);
  std::mt19937_64 rng(p.seed);
  AdditiveResult best;
  best.objective = INFINITY;
  for (int run = 0; run < p.n_init; ++run) {
    AdditiveResult r =
        Refine(data, p.bits, d, GreedyStart(data, p.bits, d, /*random=*/run > 0, rng), p);
    if (r.objective < best.objective) best = std::move(r);
  }
  return best;
}

}  // namespace cqkv
