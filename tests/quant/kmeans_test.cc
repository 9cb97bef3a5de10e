#include "quant/kmeans.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <random>
#include <vector>

#include "util/error.h"

namespace cqkv {
namespace {

double Dist2(const float* a, const float* b, int d) {
  double s = 0;
  for (int c = 0; c < d; ++c) s += (double(a[c]) - b[c]) * (double(a[c]) - b[c]);
  return s;
}

// Weighted mean squared distance of each row to its nearest centroid, in double.
double Objective(const std::vector<float>& x, const std::vector<float>& w, int d,
                 const std::vector<float>& cent) {
  const size_t n = x.size() / d, k = cent.size() / d;
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    double best = 1e300;
    for (size_t j = 0; j < k; ++j) best = std::min(best, Dist2(&x[i * d], &cent[j * d], d));
    const double wi = w.empty() ? 1.0 : w[i];
    num += wi * best;
    den += wi;
  }
  return num / den;
}

bool AllFinite(const std::vector<float>& v) {
  for (float x : v) {
    if (!std::isfinite(x)) return false;
  }
  return true;
}

// 16 centres on the corners of a hypercube with edge `sep`; 200 points of sigma 1 around each.
// k-means must find every centre to within 0.05 * sep (the sampling error is ~1/sqrt(200)).
TEST(KMeans, RecoversSeparatedGaussianCentres) {
  const int d = 4, k = 16, per = 200;
  const float sep = 10.0f;
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  std::vector<float> centres, x;
  for (int j = 0; j < k; ++j) {
    for (int c = 0; c < d; ++c) centres.push_back((j >> c & 1) ? sep : 0.0f);
  }
  for (int j = 0; j < k; ++j) {
    for (int i = 0; i < per; ++i) {
      for (int c = 0; c < d; ++c) x.push_back(centres[j * d + c] + nd(rng));
    }
  }
  KMeansParams p;
  p.k = k;
  p.n_init = 4;
  p.seed = 3;
  const KMeansResult r = KMeans(ConstMat(x.data(), k * per, d), {}, p);
  ASSERT_EQ(r.centroids.size(), size_t{k * d});
  for (int j = 0; j < k; ++j) {
    double best = 1e300;
    for (int m = 0; m < k; ++m)
      best = std::min(best, Dist2(&centres[j * d], &r.centroids[m * d], d));
    EXPECT_LT(std::sqrt(best), 0.05 * sep) << "centre " << j;
  }
  EXPECT_NEAR(r.objective, Objective(x, {}, d, r.centroids), 1e-4 * r.objective);
  EXPECT_GT(r.iterations, 0);
}

TEST(KMeans, HeavyPointPullsACentroidOntoIt) {
  const int d = 2, n = 1000;
  std::mt19937 rng(11);
  std::normal_distribution<float> nd;
  std::vector<float> x, w(n + 1, 1.0f);
  for (int i = 0; i < n * d; ++i) x.push_back(nd(rng));
  const float heavy[2] = {2.5f, -1.75f};
  x.push_back(heavy[0]);
  x.push_back(heavy[1]);
  w[n] = 1e7f;
  KMeansParams p;
  p.k = 8;
  const KMeansResult r = KMeans(ConstMat(x.data(), n + 1, d), w, p);
  double best = 1e300;
  for (int j = 0; j < p.k; ++j) best = std::min(best, Dist2(heavy, &r.centroids[j * d], d));
  EXPECT_LT(std::sqrt(best), 1e-3);
}

// Fewer distinct points than k: every distinct point is a centroid, the spares are finite
// copies, and the objective is exactly 0.
TEST(KMeans, FewerDistinctPointsThanK) {
  const int d = 3;
  const std::vector<std::vector<float>> distinct = {
      {0, 0, 0}, {1, 2, 3}, {-1, 0.5f, 2}, {4, 4, 4}, {0, 0, 1e-3f}};
  std::vector<float> x;
  for (int rep = 0; rep < 4; ++rep) {
    for (const auto& pt : distinct) x.insert(x.end(), pt.begin(), pt.end());
  }
  KMeansParams p;
  p.k = 8;
  const KMeansResult r = KMeans(ConstMat(x.data(), 20, d), {}, p);
  ASSERT_EQ(r.centroids.size(), size_t{8 * d});
  EXPECT_TRUE(AllFinite(r.centroids));
  EXPECT_EQ(r.objective, 0.0);
  for (const auto& pt : distinct) {
    double best = 1e300;
    for (int j = 0; j < p.k; ++j) best = std::min(best, Dist2(pt.data(), &r.centroids[j * d], d));
    EXPECT_EQ(best, 0.0);
  }
  // A single point (n = 1 <= k).
  const float one[2] = {3, 4};
  const KMeansResult r1 = KMeans(ConstMat(one, 1, 2), {}, p);
  for (int j = 0; j < p.k; ++j) {
    EXPECT_EQ(r1.centroids[j * 2], 3.0f);
    EXPECT_EQ(r1.centroids[j * 2 + 1], 4.0f);
  }
  // Zero-weight rows are ignored: two weighted points remain for two centroids.
  const float three[6] = {0, 0, 100, 100, 1, 1};
  const float w[3] = {1, 0, 2};
  p.k = 2;
  const KMeansResult r2 = KMeans(ConstMat(three, 3, 2), w, p);
  EXPECT_EQ(r2.objective, 0.0);
  for (float v : r2.centroids) EXPECT_TRUE(v == 0.0f || v == 1.0f);
}

// Heavily duplicated data with only slightly more distinct points than k, over many seeds: the
// Lloyd steps empty clusters often, and every re-seeded centroid must stay finite and distinct.
TEST(KMeans, EmptyClustersAreReseeded) {
  std::mt19937 rng(5);
  std::normal_distribution<float> nd;
  for (int trial = 0; trial < 40; ++trial) {
    const int d = 2, k = 12;
    std::vector<float> x;
    for (int rep = 0; rep < 50; ++rep) {
      for (int c = 0; c < 3 * d; ++c) x.push_back(static_cast<float>(c % 3));
    }
    for (int i = 0; i < 2 * k * d; ++i) x.push_back(nd(rng) * 0.01f + (i % 2) * 5.0f);
    KMeansParams p;
    p.k = k;
    p.seed = trial;
    const int64_t n = static_cast<int64_t>(x.size()) / d;
    const KMeansResult r = KMeans(ConstMat(x.data(), n, d), {}, p);
    ASSERT_TRUE(AllFinite(r.centroids)) << trial;
    for (int a = 0; a < k; ++a) {
      for (int b = a + 1; b < k; ++b) {
        EXPECT_GT(Dist2(&r.centroids[a * d], &r.centroids[b * d], d), 0) << trial;
      }
    }
    EXPECT_GE(r.objective, 0);
  }
}

// Starting with every centroid on one far-away point empties all but the first cluster (ties go
// to the lowest index); re-seeding must spread them out to a normal solution.
TEST(KMeans, ReseedsEmptyClustersFromADegenerateStart) {
  const int d = 2, n = 1000, k = 16;
  std::mt19937 rng(23);
  std::normal_distribution<float> nd;
  std::vector<float> x(n * d);
  for (auto& v : x) v = nd(rng);
  KMeansParams p;
  p.k = k;
  const KMeansResult seeded = KMeans(ConstMat(x.data(), n, d), {}, p);
  p.init_centroids.assign(k * d, 1000.0f);
  const KMeansResult r = KMeans(ConstMat(x.data(), n, d), {}, p);
  ASSERT_TRUE(AllFinite(r.centroids));
  for (int a = 0; a < k; ++a) {
    for (int b = a + 1; b < k; ++b)
      EXPECT_GT(Dist2(&r.centroids[a * d], &r.centroids[b * d], d), 0);
  }
  EXPECT_LT(r.objective, 1.5 * seeded.objective);
  EXPECT_NEAR(Objective(x, {}, d, r.centroids), r.objective, 1e-5 * r.objective);
  p.init_centroids.resize(3);
  EXPECT_THROW(KMeans(ConstMat(x.data(), n, d), {}, p), Error);
}

// 8 weighted points in 2-D, k = 3: compares with the best of all 3^8 partitions.
TEST(KMeans, MatchesBruteForceOptimumOnTinyCase) {
  const int d = 2, n = 8, k = 3;
  std::mt19937 rng(9);
  std::normal_distribution<float> nd;
  std::uniform_real_distribution<float> ud(0.5f, 2.0f);
  std::vector<float> x(n * d), w(n);
  for (auto& v : x) v = nd(rng);
  for (auto& v : w) v = ud(rng);
  double best = 1e300;
  std::vector<int> a(n, 0);
  for (int code = 0; code < 6561; ++code) {
    int c = code;
    for (int i = 0; i < n; ++i, c /= 3) a[i] = c % 3;
    double sw[3] = {}, sx[3][2] = {}, obj = 0;
    for (int i = 0; i < n; ++i) {
      sw[a[i]] += w[i];
      for (int j = 0; j < d; ++j) sx[a[i]][j] += w[i] * x[i * d + j];
    }
    for (int i = 0; i < n; ++i) {
      for (int j = 0; j < d; ++j) {
        const double diff = x[i * d + j] - sx[a[i]][j] / sw[a[i]];
        obj += w[i] * diff * diff;
      }
    }
    best = std::min(best, obj);
  }
  double w_sum = 0;
  for (float v : w) w_sum += v;
  best /= w_sum;
  KMeansParams p;
  p.k = k;
  p.n_init = 20;
  const KMeansResult r = KMeans(ConstMat(x.data(), n, d), w, p);
  EXPECT_NEAR(r.objective, best, 1e-6 * best);
  EXPECT_NEAR(Objective(x, w, d, r.centroids), r.objective, 1e-6 * best);
}

// Same seed, more iterations: Lloyd never increases the objective.
TEST(KMeans, ObjectiveDecreasesWithIterations) {
  const int d = 4, n = 3000;
  std::mt19937 rng(13);
  std::normal_distribution<float> nd;
  std::vector<float> x(n * d);
  for (auto& v : x) v = nd(rng);
  double prev = 1e300;
  for (int iters : {0, 1, 2, 4, 8, 32}) {
    KMeansParams p;
    p.k = 64;
    p.max_iter = iters;
    p.tol = 0;
    const KMeansResult r = KMeans(ConstMat(x.data(), n, d), {}, p);
    EXPECT_LE(r.objective, prev * (1 + 1e-9)) << iters;
    EXPECT_LE(r.iterations, iters);  // fewer only if it converged exactly
    EXPECT_NEAR(Objective(x, {}, d, r.centroids), r.objective, 1e-5 * r.objective);
    prev = r.objective;
  }
  // The pool splits the assignment step without changing the result.
  ThreadPool pool(2);
  KMeansParams p;
  p.k = 64;
  const KMeansResult a = KMeans(ConstMat(x.data(), n, d), {}, p);
  const KMeansResult b = KMeans(ConstMat(x.data(), n, d), {}, p, &pool);
  EXPECT_EQ(a.centroids, b.centroids);
}

TEST(KMeans, BadInputIsAnError) {
  std::vector<float> x = {1, 2, 3, NAN}, w = {1, -1};
  KMeansParams p;
  p.k = 1;
  EXPECT_THROW(KMeans(ConstMat(x.data(), 2, 2), {}, p), Error);
  x[3] = 4;
  EXPECT_THROW(KMeans(ConstMat(x.data(), 2, 2), w, p), Error);
  w = {0, 0};
  EXPECT_THROW(KMeans(ConstMat(x.data(), 2, 2), w, p), Error);
  w = {1};
  EXPECT_THROW(KMeans(ConstMat(x.data(), 2, 2), w, p), Error);
  p.k = 0;
  EXPECT_THROW(KMeans(ConstMat(x.data(), 2, 2), {}, p), Error);
}

// The SIMD kernel against the double reference, over dims with and without a compile-time
// path and k below, at and above the vector width. Indices may differ only on a near-tie.
TEST(AssignNearest, MatchesReference) {
  std::mt19937 rng(17);
  std::normal_distribution<float> nd;
  for (int d : {1, 2, 3, 4, 5, 6, 8, 11, 16, 24}) {
    for (int k : {1, 2, 3, 7, 8, 16, 33, 256}) {
      const int n = 50;
      std::vector<float> x(n * (d + 3)), cent(k * d);
      for (auto& v : x) v = nd(rng);
      for (auto& v : cent) v = nd(rng);
      const ConstMat xm(x.data(), n, d, d + 3);  // strided rows
      std::vector<int32_t> got(n), want(n);
      std::vector<float> got_d(n), want_d(n);
      AssignNearest(xm, ConstMat(cent.data(), k, d), got.data(), got_d.data());
      AssignNearestRef(xm, ConstMat(cent.data(), k, d), want.data(), want_d.data());
      for (int i = 0; i < n; ++i) {
        EXPECT_NEAR(got_d[i], want_d[i], 1e-5 * (1 + want_d[i])) << d << " " << k << " " << i;
        if (got[i] != want[i]) {
          EXPECT_NEAR(Dist2(xm.Row(i), &cent[got[i] * d], d), want_d[i], 1e-5 * (1 + want_d[i]));
        }
      }
    }
  }
  // Ties go to the lowest index: duplicated centroids, and a point exactly on one.
  std::vector<float> cent(64 * 2);
  for (int j = 0; j < 64; ++j) {
    cent[j * 2] = static_cast<float>(j % 16);
    cent[j * 2 + 1] = 0.0f;
  }
  const float pt[2] = {9.0f, 0.0f};
  int32_t idx;
  AssignNearest(ConstMat(pt, 1, 2), ConstMat(cent.data(), 64, 2), &idx);
  EXPECT_EQ(idx, 9);
}

// Calibration-sized workload: 256 problems of 4096 points, d = 4, k = 256. Run by hand with
// --gtest_also_run_disabled_tests to measure; prints the time.
TEST(KMeans, DISABLED_Speed) {
  const int n = 4096, d = 4, problems = 256;
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  std::vector<float> x(static_cast<size_t>(n) * d * problems);
  for (auto& v : x) v = nd(rng);
  ThreadPool pool(0);
  KMeansParams p;
  p.k = 256;
  std::vector<int> iters(problems);
  const auto t0 = std::chrono::steady_clock::now();
  pool.ParallelFor(problems, 1, [&](int64_t b, int64_t e, int) {
    for (int64_t i = b; i < e; ++i) {
      iters[i] = KMeans(ConstMat(x.data() + i * n * d, n, d), {}, p).iterations;
    }
  });
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  double mean_it = 0;
  for (int it : iters) mean_it += it / double(problems);
  std::printf("%d k-means runs (n=%d d=%d k=%d) on %d threads: %.2f s, %.1f iterations each\n",
              problems, n, d, p.k, pool.size(), s, mean_it);
}

}  // namespace
}  // namespace cqkv
