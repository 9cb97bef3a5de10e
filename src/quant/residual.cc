#include "quant/residual.h"

#include <cmath>

#include "quant/additive_als.h"
#include "quant/kmeans.h"
#include "util/error.h"

namespace cqkv {
namespace {

// Code i * h + j sums stage rows i (A) and h + j (B).
SumLayout ResidualLayout(int bits) {
  const int h = 1 << (bits / 2);
  SumLayout l;
  l.n_basis = 2 * h;
  l.offsets.push_back(0);
  for (int i = 0; i < h; ++i) {
    for (int j = 0; j < h; ++j) {
      l.terms.push_back(i);
      l.terms.push_back(h + j);
      l.offsets.push_back(static_cast<int>(l.terms.size()));
    }
  }
  return l;
}

// Stage A: weighted k-means of x into h; stage B: weighted k-means of x - A[nearest] into h.
std::vector<double> KMeansStart(ConstMat x, std::span<const float> weights, int h,
                                const ResidualParams& p, uint64_t seed) {
  const int64_t n = x.rows;
  const int d = static_cast<int>(x.cols);
  KMeansParams kp;
  kp.k = h;
  kp.max_iter = p.max_iter;
  kp.seed = seed;
  const KMeansResult a = KMeans(x, weights, kp);
  std::vector<int32_t> nearest(n);
  AssignNearest(x, ConstMat(a.centroids.data(), h, d), nearest.data());
  std::vector<float> r(static_cast<size_t>(n) * d);
  for (int64_t i = 0; i < n; ++i) {
    for (int j = 0; j < d; ++j) r[i * d + j] = x(i, j) - a.centroids[nearest[i] * d + j];
  }
  kp.seed = seed + 0x9e3779b97f4a7c15ull;
  const KMeansResult b = KMeans(ConstMat(r.data(), n, d), weights, kp);
  std::vector<double> stages(a.centroids.begin(), a.centroids.end());
  stages.insert(stages.end(), b.centroids.begin(), b.centroids.end());
  return stages;
}

}  // namespace

void ExpandResidual(const float* stages, int bits, int d, float* centroids) {
  const int h = 1 << (bits / 2);
  for (int i = 0; i < h; ++i) {
    for (int j = 0; j < h; ++j) {
      float* c = centroids + (static_cast<int64_t>(i) * h + j) * d;
      const float* a = stages + static_cast<int64_t>(i) * d;
      const float* b = stages + static_cast<int64_t>(h + j) * d;
      for (int k = 0; k < d; ++k) c[k] = a[k] + b[k];
    }
  }
}

ResidualResult FitResidual(ConstMat x, std::span<const float> weights, const ResidualParams& p) {
  CQKV_CHECK(p.bits >= 2 && p.bits <= 12 && p.bits % 2 == 0,
             "residual fit: bits must be even and in 2..12 (two stages of 2^(b/2)), got {}",
             p.bits);
  CQKV_CHECK(p.max_iter >= 0 && p.n_init >= 1 && p.tol >= 0,
             "residual fit: bad parameters (max_iter {}, n_init {}, tol {})", p.max_iter, p.n_init,
             p.tol);
  const WeightedRows data = PrepareWeightedRows(x, weights, "residual fit");
  const SumLayout layout = ResidualLayout(p.bits);
  ResidualResult best;
  best.objective = INFINITY;
  for (int run = 0; run < p.n_init; ++run) {
    const uint64_t seed = p.seed + static_cast<uint64_t>(run) * 1000003;
    SumFit r = RefineSum(data, layout, KMeansStart(x, weights, 1 << (p.bits / 2), p, seed),
                         p.max_iter, p.tol);
    if (r.objective < best.objective) {
      best = {std::move(r.basis), r.objective, r.iterations, std::move(r.history)};
    }
  }
  return best;
}

}  // namespace cqkv
