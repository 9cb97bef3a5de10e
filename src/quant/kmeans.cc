// Weighted k-means. The nearest-centroid kernel is compiled once per SIMD target through
// foreach_target.h (lanes run over centroids, since d is tiny and k is large); the scalar
// driver (seeding, Lloyd updates, empty-cluster repair) lives in the HWY_ONCE part.
#include <cassert>
#include <cmath>
#include <cstdint>
#include <cstring>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "quant/kmeans.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
// Must come after foreach_target.h.
#include <hwy/highway.h>

#include "quant/kmeans.h"

HWY_BEFORE_NAMESPACE();
namespace cqkv {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// D > 0 fixes the dimension at compile time so the broadcasts of x stay in registers; D == 0
// reads it from `d`. ct is (d, k) with row stride cs.
template <int D>
void AssignRows(const float* HWY_RESTRICT x, int64_t n, int64_t xs, int d,
                const float* HWY_RESTRICT ct, int64_t cs, int64_t k, int32_t* HWY_RESTRICT out,
                float* HWY_RESTRICT dist) {
  const hn::ScalableTag<float> df;
  const hn::RebindToSigned<decltype(df)> di;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(df));
  const int64_t k_vec = k - k % lanes;
  const int dims = D > 0 ? D : d;
  for (int64_t i = 0; i < n; ++i) {
    const float* xi = x + i * xs;
    float best = HUGE_VALF;
    int32_t best_j = 0;
    if (k_vec > 0) {
      auto vbest = hn::Set(df, HUGE_VALF);
      auto vidx = hn::Zero(di);
      auto vj = hn::Iota(di, 0);
      const auto step = hn::Set(di, static_cast<int32_t>(lanes));
      for (int64_t j = 0; j < k_vec; j += lanes) {
        auto acc = hn::Zero(df);
        for (int c = 0; c < dims; ++c) {
          const auto diff = hn::Sub(hn::Set(df, xi[c]), hn::LoadU(df, ct + c * cs + j));
          acc = hn::MulAdd(diff, diff, acc);
        }
        // Strict < keeps each lane's first minimum, so ties resolve to the lowest index below.
        const auto better = hn::Lt(acc, vbest);
        vbest = hn::IfThenElse(better, acc, vbest);
        vidx = hn::IfThenElse(hn::RebindMask(di, better), vj, vidx);
        vj = hn::Add(vj, step);
      }
      best = hn::GetLane(hn::MinOfLanes(df, vbest));
      const auto at_min = hn::RebindMask(di, hn::Eq(vbest, hn::Set(df, best)));
      const auto cand = hn::IfThenElse(at_min, vidx, hn::Set(di, INT32_MAX));
      best_j = hn::GetLane(hn::MinOfLanes(di, cand));
      if (!(best < HUGE_VALF)) best_j = 0;  // every distance inf or NaN
    }
    for (int64_t j = k_vec; j < k; ++j) {
      float acc = 0.0f;
      for (int c = 0; c < dims; ++c) {
        const float diff = xi[c] - ct[c * cs + j];
        acc += diff * diff;
      }
      if (acc < best) {
        best = acc;
        best_j = static_cast<int32_t>(j);
      }
    }
    out[i] = best_j;
    if (dist) dist[i] = best;
  }
}

void AssignImpl(const float* x, int64_t n, int64_t xs, int d, const float* ct, int64_t cs,
                int64_t k, int32_t* out, float* dist) {
  switch (d) {
    case 1:
      return AssignRows<1>(x, n, xs, d, ct, cs, k, out, dist);
    case 2:
      return AssignRows<2>(x, n, xs, d, ct, cs, k, out, dist);
    case 3:
      return AssignRows<3>(x, n, xs, d, ct, cs, k, out, dist);
    case 4:
      return AssignRows<4>(x, n, xs, d, ct, cs, k, out, dist);
    case 6:
      return AssignRows<6>(x, n, xs, d, ct, cs, k, out, dist);
    case 8:
      return AssignRows<8>(x, n, xs, d, ct, cs, k, out, dist);
    case 16:
      return AssignRows<16>(x, n, xs, d, ct, cs, k, out, dist);
    default:
      return AssignRows<0>(x, n, xs, d, ct, cs, k, out, dist);
  }
}

// k-means++ trial of candidate c over the channel-major points xt (d, n): out[i] =
// min(d2[i], |x_i - c|^2); returns sum_i w[i] * out[i].
double CandidateImpl(const float* HWY_RESTRICT xt, int64_t n, int d, const float* HWY_RESTRICT c,
                     const float* HWY_RESTRICT d2, const float* HWY_RESTRICT w,
                     float* HWY_RESTRICT out) {
  const hn::ScalableTag<float> df;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(df));
  auto pot = hn::Zero(df);
  int64_t i = 0;
  for (; i + lanes <= n; i += lanes) {
    auto acc = hn::Zero(df);
    for (int j = 0; j < d; ++j) {
      const auto diff = hn::Sub(hn::LoadU(df, xt + j * n + i), hn::Set(df, c[j]));
      acc = hn::MulAdd(diff, diff, acc);
    }
    const auto v = hn::Min(acc, hn::LoadU(df, d2 + i));
    hn::StoreU(v, df, out + i);
    pot = hn::MulAdd(v, hn::LoadU(df, w + i), pot);
  }
  double sum = hn::GetLane(hn::SumOfLanes(df, pot));
  for (; i < n; ++i) {
    float acc = 0.0f;
    for (int j = 0; j < d; ++j) acc += (xt[j * n + i] - c[j]) * (xt[j * n + i] - c[j]);
    out[i] = std::min(acc, d2[i]);
    sum += static_cast<double>(w[i]) * out[i];
  }
  return sum;
}

}  // namespace HWY_NAMESPACE
}  // namespace cqkv
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>

#include "util/error.h"

namespace cqkv {

HWY_EXPORT(AssignImpl);
HWY_EXPORT(CandidateImpl);

namespace {

void Assign(ConstMat x, ConstMat ct, int32_t* out, float* dist) {
  assert(x.cols == ct.rows);
  if (x.rows == 0) return;
  HWY_DYNAMIC_DISPATCH(AssignImpl)
  (x.data, x.rows, x.stride, static_cast<int>(x.cols), ct.data, ct.stride, ct.cols, out, dist);
}

// Deterministic across standard libraries, unlike std::uniform_real_distribution.
class Rng {
 public:
  explicit Rng(uint64_t seed) : gen_(seed) {}
  double Uniform() { return static_cast<double>(gen_() >> 11) * 0x1.0p-53; }  // [0, 1)

 private:
  std::mt19937_64 gen_;
};

// The training set after dropping zero-weight rows and merging duplicates: every row distinct,
// every weight positive, which is what makes "more distinct points than k" a usable invariant.
struct Points {
  int64_t n = 0;
  int d = 0;
  std::vector<float> x;   // (n, d)
  std::vector<float> xt;  // (d, n), for the vectorisable seeding loops
  std::vector<double> w;  // (n)
  std::vector<float> wf;  // (n) w / mean(w), for the seeding loops
  double w_sum = 0;
};

Points PreparePoints(ConstMat x, std::span<const float> weights) {
  const int d = static_cast<int>(x.cols);
  // (hash of the row, row): sorting integers groups duplicates far faster than comparing rows.
  std::vector<std::pair<uint64_t, int64_t>> order;
  order.reserve(static_cast<size_t>(x.rows));
  std::vector<float> rows(static_cast<size_t>(x.rows * d));
  for (int64_t i = 0; i < x.rows; ++i) {
    float* row = rows.data() + i * d;
    uint64_t h = 0xcbf29ce484222325ull;
    for (int c = 0; c < d; ++c) {
      const float v = x(i, c);
      CQKV_CHECK(std::isfinite(v), "k-means: data row {} has a non-finite value", i);
      row[c] = v + 0.0f;  // -0 -> +0, so equal values hash equally
      uint32_t bits;
      std::memcpy(&bits, &row[c], 4);
      h = (h ^ bits) * 0x100000001b3ull;
    }
    if (!weights.empty()) {
      const float w = weights[static_cast<size_t>(i)];
      CQKV_CHECK(std::isfinite(w) && w >= 0, "k-means: weight {} of row {} is not >= 0", w, i);
      if (w == 0) continue;
    }
    order.emplace_back(h, i);
  }
  CQKV_CHECK(!order.empty(), "k-means: all {} weights are zero", x.rows);
  std::sort(order.begin(), order.end());
  Points p;
  p.d = d;
  std::vector<int64_t> owner(order.size());  // merged point of each sorted row
  for (size_t s = 0; s < order.size(); ++s) {
    const float* row = rows.data() + order[s].second * d;
    const double w = weights.empty() ? 1.0 : weights[static_cast<size_t>(order[s].second)];
    // Equal rows have equal hashes and sit together; look back over the run of equal hashes.
    owner[s] = -1;
    for (size_t t = s; t-- > 0 && order[t].first == order[s].first;) {
      if (std::equal(row, row + d, rows.data() + order[t].second * d)) {
        owner[s] = owner[t];
        break;
      }
    }
    p.w_sum += w;
    if (owner[s] >= 0) {
      p.w[owner[s]] += w;
      continue;
    }
    owner[s] = p.n++;
    p.x.insert(p.x.end(), row, row + d);
    p.w.push_back(w);
  }
  // Scaled to mean 1 so that w * D^2 stays in float range for any scale of Fisher weights.
  p.wf.resize(p.w.size());
  for (int64_t i = 0; i < p.n; ++i) p.wf[i] = static_cast<float>(p.w[i] * p.n / p.w_sum);
  p.xt.resize(p.x.size());
  for (int64_t i = 0; i < p.n; ++i) {
    for (int c = 0; c < d; ++c) p.xt[c * p.n + i] = p.x[i * d + c];
  }
  return p;
}

// Sum with 8 independent float lanes, so it vectorises without -ffast-math.
double SumLanes(const float* v, int64_t n) {
  float acc[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) acc[j] += v[i + j];
  }
  double s = 0;
  for (; i < n; ++i) s += v[i];
  for (float a : acc) s += a;
  return s;
}

// Draws index i with probability mass[i] / sum(mass). Per-block sums make a draw cost
// O(n / kBlock + kBlock), which matters because seeding draws several times per centroid.
class Sampler {
 public:
  static constexpr int64_t kBlock = 64;

  explicit Sampler(const std::vector<float>& mass) : mass_(mass) {
    const int64_t n = static_cast<int64_t>(mass.size());
    for (int64_t b = 0; b < n; b += kBlock) {
      block_sum_.push_back(SumLanes(mass.data() + b, std::min(kBlock, n - b)));
      total_ += block_sum_.back();
    }
  }
  double total() const { return total_; }

  int64_t Draw(Rng& rng) const {
    assert(total_ > 0);
    const double target = rng.Uniform() * total_;
    const int64_t n = static_cast<int64_t>(mass_.size());
    double acc = 0;
    for (size_t b = 0; b < block_sum_.size(); ++b) {
      if (acc + block_sum_[b] <= target) {
        acc += block_sum_[b];
        continue;
      }
      const int64_t end = std::min(n, static_cast<int64_t>(b + 1) * kBlock);
      for (int64_t i = static_cast<int64_t>(b) * kBlock; i < end; ++i) {
        acc += mass_[i];
        if (mass_[i] > 0 && acc > target) return i;
      }
    }
    // Rounding carried the target past the end: the last point with mass.
    int64_t i = n - 1;
    while (i > 0 && !(mass_[i] > 0)) --i;
    return i;
  }

 private:
  const std::vector<float>& mass_;
  std::vector<double> block_sum_;
  double total_ = 0;
};

// out[i] = min(d2[i], |x_i - c|^2); returns the potential sum_i w_i out[i].
double Candidate(const Points& p, const float* c, const float* d2, float* out) {
  return HWY_DYNAMIC_DISPATCH(CandidateImpl)(p.xt.data(), p.n, p.d, c, d2, p.wf.data(), out);
}

// Greedy k-means++ (as scikit-learn does): each new centroid is the best, by resulting
// potential sum_i w_i D(x_i)^2, of `trials` points drawn with probability w_i D(x_i)^2. Plain
// k-means++ (trials = 1) often puts two seeds in one well-separated cluster, which Lloyd
// cannot undo. Requires p.n > k, so some point always has D > 0.
void SeedPlusPlus(const Points& p, int k, int trials, Rng& rng, float* centroids) {
  const int d = p.d;
  const int64_t n = p.n;
  std::vector<float> d2(static_cast<size_t>(n), HUGE_VALF), mass(d2.size()), best_d2(d2.size()),
      cand_d2(d2.size());
  int64_t pick = Sampler(p.wf).Draw(rng);
  std::copy_n(p.x.data() + pick * d, d, centroids);
  Candidate(p, centroids, d2.data(), best_d2.data());
  d2.swap(best_d2);
  for (int m = 1; m < k; ++m) {
    for (int64_t i = 0; i < n; ++i) mass[i] = p.wf[i] * d2[i];
    const Sampler sampler(mass);
    if (!(sampler.total() > 0)) {
      // Distinct points whose squared distances underflow: any point keeps centroids finite.
      pick = (pick + 1) % n;
      Candidate(p, p.x.data() + pick * d, d2.data(), best_d2.data());
    } else {
      double best_pot = HUGE_VAL;
      for (int t = 0; t < trials; ++t) {
        const int64_t cand = sampler.Draw(rng);
        const double pot = Candidate(p, p.x.data() + cand * d, d2.data(), cand_d2.data());
        if (t == 0 || pot < best_pot) {
          best_pot = pot;
          pick = cand;
          best_d2.swap(cand_d2);
        }
      }
    }
    std::copy_n(p.x.data() + pick * d, d, centroids + static_cast<int64_t>(m) * d);
    d2.swap(best_d2);
  }
}

// Gives every empty cluster the point with the largest weighted error among clusters that keep
// at least one other point; that point's error drops to 0, so the objective never rises.
void ReseedEmpty(const Points& p, int k, std::vector<int32_t>& idx, std::vector<float>& dist) {
  std::vector<int64_t> count(static_cast<size_t>(k), 0);
  for (int32_t j : idx) ++count[j];
  for (int j = 0; j < k; ++j) {
    if (count[j] > 0) continue;
    int64_t best = -1;
    double best_err = -1;
    for (int64_t i = 0; i < p.n; ++i) {
      const double err = p.w[i] * dist[i];
      if (count[idx[i]] > 1 && err > best_err) {
        best_err = err;
        best = i;
      }
    }
    assert(best >= 0);  // p.n > k: some cluster holds two points
    --count[idx[best]];
    idx[best] = j;
    count[j] = 1;
    dist[best] = 0;
  }
}

void UpdateMeans(const Points& p, int k, const std::vector<int32_t>& idx, float* centroids) {
  const int d = p.d;
  std::vector<double> sum(static_cast<size_t>(k) * d, 0.0), wsum(static_cast<size_t>(k), 0.0);
  for (int64_t i = 0; i < p.n; ++i) {
    const int64_t j = idx[i];
    wsum[j] += p.w[i];
    for (int c = 0; c < d; ++c) sum[j * d + c] += p.w[i] * p.x[i * d + c];
  }
  for (int64_t j = 0; j < k; ++j) {
    if (wsum[j] <= 0) continue;  // keeps its old (finite) position
    for (int c = 0; c < d; ++c) centroids[j * d + c] = static_cast<float>(sum[j * d + c] / wsum[j]);
  }
}

// One seeded run of Lloyd's algorithm; result.centroids and objective always belong together
// (the loop stops right after an assignment).
KMeansResult RunLloyd(const Points& p, const KMeansParams& params, uint64_t seed,
                      ThreadPool* pool) {
  const int k = params.k, d = p.d;
  KMeansResult r;
  r.centroids.resize(static_cast<size_t>(k) * d);
  Rng rng(seed);
  if (!params.init_centroids.empty()) {
    r.centroids = params.init_centroids;
  } else {
    const int trials = params.seed_trials > 0
                           ? params.seed_trials
                           : 2 + static_cast<int>(std::log(static_cast<double>(k)));
    SeedPlusPlus(p, k, trials, rng, r.centroids.data());
  }
  std::vector<float> ct(r.centroids.size()), dist(static_cast<size_t>(p.n));
  std::vector<int32_t> idx(static_cast<size_t>(p.n));
  const ConstMat xm(p.x.data(), p.n, d);
  double prev = 0;
  for (int it = 0;; ++it) {
    TransposeCentroids(ConstMat(r.centroids.data(), k, d), ct.data());
    const ConstMat ctm(ct.data(), d, k);
    if (pool != nullptr && pool->size() > 1 && p.n >= 2048) {
      pool->ParallelFor(p.n, 1024, [&](int64_t b, int64_t e, int) {
        Assign(xm.RowRange(b, e - b), ctm, idx.data() + b, dist.data() + b);
      });
    } else {
      Assign(xm, ctm, idx.data(), dist.data());
    }
    double obj = 0;
    for (int64_t i = 0; i < p.n; ++i) obj += p.w[i] * dist[i];
    obj /= p.w_sum;
    r.objective = obj;
    r.iterations = it;
    if (obj <= 0 || it >= params.max_iter || (it > 0 && prev - obj <= params.tol * prev)) break;
    prev = obj;
    ReseedEmpty(p, k, idx, dist);
    UpdateMeans(p, k, idx, r.centroids.data());
  }
  return r;
}

}  // namespace

KMeansResult KMeans(ConstMat x, std::span<const float> weights, const KMeansParams& params,
                    ThreadPool* pool) {
  CQKV_CHECK(params.k >= 1, "k-means: k must be >= 1, got {}", params.k);
  CQKV_CHECK(params.max_iter >= 0 && params.n_init >= 1 && params.tol >= 0,
             "k-means: bad parameters (max_iter {}, n_init {}, tol {})", params.max_iter,
             params.n_init, params.tol);
  CQKV_CHECK(x.rows >= 1 && x.cols >= 1, "k-means: empty data ({} x {})", x.rows, x.cols);
  CQKV_CHECK(weights.empty() || static_cast<int64_t>(weights.size()) == x.rows,
             "k-means: {} weights for {} rows", weights.size(), x.rows);
  if (!params.init_centroids.empty()) {
    CQKV_CHECK(params.init_centroids.size() == static_cast<size_t>(params.k * x.cols),
               "k-means: {} initial centroid values for k = {}, d = {}",
               params.init_centroids.size(), params.k, x.cols);
    for (float v : params.init_centroids) {
      CQKV_CHECK(std::isfinite(v), "k-means: non-finite initial centroid");
    }
  }
  const Points p = PreparePoints(x, weights);
  const int k = params.k, d = p.d;
  if (p.n <= k) {
    // Every distinct point gets its own centroid; spare centroids repeat the heaviest points
    // (harmless: ties encode to the lowest index, so the copies are never used).
    KMeansResult r;
    r.centroids = p.x;
    std::vector<int64_t> by_weight(static_cast<size_t>(p.n));
    std::iota(by_weight.begin(), by_weight.end(), 0);
    std::stable_sort(by_weight.begin(), by_weight.end(),
                     [&](int64_t a, int64_t b) { return p.w[a] > p.w[b]; });
    for (int64_t j = p.n; j < k; ++j) {
      const float* src = p.x.data() + by_weight[(j - p.n) % p.n] * d;
      r.centroids.insert(r.centroids.end(), src, src + d);
    }
    return r;
  }
  KMeansResult best;
  for (int run = 0; run < params.n_init; ++run) {
    const uint64_t seed = params.seed + 0x9e3779b97f4a7c15ull * static_cast<uint64_t>(run);
    KMeansResult r = RunLloyd(p, params, seed, pool);
    if (run == 0 || r.objective < best.objective) best = std::move(r);
  }
  return best;
}

void TransposeCentroids(ConstMat centroids, float* out) {
  const int64_t k = centroids.rows, d = centroids.cols;
  for (int64_t i = 0; i < k; ++i) {
    for (int64_t c = 0; c < d; ++c) out[c * k + i] = centroids(i, c);
  }
}

void AssignNearestT(ConstMat x, ConstMat centroids_t, int32_t* out, float* dist) {
  assert(centroids_t.cols >= 1);
  Assign(x, centroids_t, out, dist);
}

void AssignNearest(ConstMat x, ConstMat centroids, int32_t* out, float* dist) {
  std::vector<float> ct(static_cast<size_t>(centroids.rows * centroids.cols));
  TransposeCentroids(centroids, ct.data());
  Assign(x, ConstMat(ct.data(), centroids.cols, centroids.rows), out, dist);
}

void AssignNearestRef(ConstMat x, ConstMat centroids, int32_t* out, float* dist) {
  assert(x.cols == centroids.cols);
  for (int64_t i = 0; i < x.rows; ++i) {
    double best = std::numeric_limits<double>::infinity();
    int32_t best_j = 0;
    for (int64_t j = 0; j < centroids.rows; ++j) {
      double acc = 0;
      for (int64_t c = 0; c < x.cols; ++c) {
        const double diff = static_cast<double>(x(i, c)) - centroids(j, c);
        acc += diff * diff;
      }
      if (acc < best) {
        best = acc;
        best_j = static_cast<int32_t>(j);
      }
    }
    out[i] = best_j;
    if (dist) dist[i] = static_cast<float>(best);
  }
}

}  // namespace cqkv
#endif  // HWY_ONCE
