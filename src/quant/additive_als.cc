#include "quant/additive_als.h"

#include <algorithm>
#include <cmath>

#include "quant/kmeans.h"
#include "util/error.h"

namespace cqkv {
namespace {

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

}  // namespace

WeightedRows PrepareWeightedRows(ConstMat x, std::span<const float> weights, const char* what) {
  CQKV_CHECK(x.rows >= 1 && x.cols >= 1, "{}: empty data ({} x {})", what, x.rows, x.cols);
  CQKV_CHECK(weights.empty() || static_cast<int64_t>(weights.size()) == x.rows,
             "{}: {} weights for {} rows", what, weights.size(), x.rows);
  WeightedRows d{x, {}, {}, 0};
  for (int64_t i = 0; i < x.rows; ++i) {
    for (int64_t j = 0; j < x.cols; ++j) {
      CQKV_CHECK(std::isfinite(x(i, j)), "{}: data row {} has a non-finite value", what, i);
    }
    const double w = weights.empty() ? 1.0 : weights[i];
    CQKV_CHECK(std::isfinite(w) && w >= 0, "{}: weight {} of row {} is not >= 0", what, w, i);
    if (w == 0) continue;
    d.rows.push_back(i);
    d.w.push_back(w);
    d.total += w;
  }
  CQKV_CHECK(!d.rows.empty(), "{}: all {} weights are zero", what, x.rows);
  return d;
}

void ExpandSum(const SumLayout& layout, const float* basis, int d, float* centroids) {
  for (int code = 0; code < layout.n_codes(); ++code) {
    float* c = centroids + static_cast<int64_t>(code) * d;
    const int* t = layout.terms.data() + layout.offsets[code];
    const int nt = layout.offsets[code + 1] - layout.offsets[code];
    std::copy_n(basis + static_cast<int64_t>(t[0]) * d, d, c);
    for (int k = 1; k < nt; ++k) {
      const float* b = basis + static_cast<int64_t>(t[k]) * d;
      for (int j = 0; j < d; ++j) c[j] += b[j];
    }
  }
}

SumFit RefineSum(const WeightedRows& data, const SumLayout& layout, std::vector<double> basis,
                 int max_iter, double tol) {
  const int K = layout.n_codes(), m = layout.n_basis;
  const int d = static_cast<int>(data.x.cols);
  const size_t n = data.rows.size();
  std::vector<float> x(n * d), table(static_cast<size_t>(K) * d), table_t(table.size()), dist(n);
  for (size_t i = 0; i < n; ++i) {
    for (int j = 0; j < d; ++j) x[i * d + j] = data.x(data.rows[i], j);
  }
  std::vector<int32_t> code(n);
  SumFit best;
  best.objective = INFINITY;
  std::vector<float> fbasis(basis.size());
  std::vector<double> history;
  for (int iter = 0;; ++iter) {
    for (size_t i = 0; i < basis.size(); ++i) fbasis[i] = static_cast<float>(basis[i]);
    ExpandSum(layout, fbasis.data(), d, table.data());
    TransposeCentroids(ConstMat(table.data(), K, d), table_t.data());
    AssignNearestT(ConstMat(x.data(), static_cast<int64_t>(n), d), ConstMat(table_t.data(), d, K),
                   code.data(), dist.data());
    double obj = 0;
    for (size_t i = 0; i < n; ++i) obj += data.w[i] * dist[i];
    obj /= data.total;
    history.push_back(obj);
    const double prev = best.objective;
    if (obj < best.objective) {
      best.objective = obj;
      best.basis = fbasis;
      best.iterations = iter;
    }
    if (iter >= max_iter || (iter > 0 && (!(obj < prev) || prev - obj <= tol * prev))) break;
    // Normal equations over codes: code k's design row selects its terms.
    std::vector<double> wp(K, 0.0), xp(static_cast<size_t>(K) * d, 0.0);
    for (size_t i = 0; i < n; ++i) {
      wp[code[i]] += data.w[i];
      for (int j = 0; j < d; ++j) xp[code[i] * d + j] += data.w[i] * x[i * d + j];
    }
    std::vector<double> M(static_cast<size_t>(m) * m, 0.0), R(static_cast<size_t>(m) * d, 0.0);
    for (int k = 0; k < K; ++k) {
      if (wp[k] == 0) continue;
      const int* t = layout.terms.data() + layout.offsets[k];
      const int nt = layout.offsets[k + 1] - layout.offsets[k];
      for (int a = 0; a < nt; ++a) {
        for (int b = 0; b < nt; ++b) M[t[a] * m + t[b]] += wp[k];
        for (int j = 0; j < d; ++j) R[t[a] * d + j] += xp[k * d + j];
      }
    }
    std::vector<double> next = basis;
    if (!SolveRidge(M, R, basis, m, d, next)) break;
    basis = next;
  }
  best.history = std::move(history);
  return best;
}

}  // namespace cqkv
