// Weighted k-means (greedy k-means++ seeding, Lloyd iterations) and nearest-centroid assignment,
// the learning and encoding halves of coupled quantization. Vectors are tiny (d = CQ group size,
// 1..64) and problems many, so one call is single-threaded by default and callers parallelise
// across problems; the assignment kernel is SIMD over centroids (Highway, dispatched per call).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "util/tensor.h"
#include "util/thread_pool.h"

namespace cqkv {

struct KMeansParams {
  int k = 256;         // number of centroids
  int max_iter = 100;  // Lloyd iterations (centroid updates) per run
  int n_init = 1;      // independent runs (different seeds); the lowest objective wins
  double tol = 1e-5;   // stop when the objective improves by less than tol (relative)
  // Candidates drawn per k-means++ seed, the best kept (greedy k-means++); 0 = 2 + ln k.
  int seed_trials = 0;
  uint64_t seed = 1;
  // (k, d) starting centroids instead of seeding (warm starts); empty = k-means++.
  std::vector<float> init_centroids;
};

struct KMeansResult {
  std::vector<float> centroids;  // (k, d) row-major
  double objective = 0;          // weighted mean squared distance to the nearest centroid
  int iterations = 0;            // Lloyd updates of the winning run
};

// Clusters the rows of x (n, d) into params.k centroids minimising
// sum_i w_i ||x_i - c(i)||^2 / sum_i w_i. `weights` has n non-negative entries, or is empty for
// uniform weights; zero-weight rows are ignored. Duplicate rows are merged (weights summed), so
// when at most k distinct rows remain they become the centroids exactly (the rest are copies of
// the heaviest ones) and the objective is 0. Empty clusters are re-seeded with the point of
// largest weighted error, so every centroid is finite. `pool` (may be null) splits the
// assignment step of one problem; prefer parallelism across problems. Throws cqkv::Error on
// non-finite data, negative weights, all-zero weights or bad parameters.
KMeansResult KMeans(ConstMat x, std::span<const float> weights, const KMeansParams& params,
                    ThreadPool* pool = nullptr);

// For each row of x (n, d): index of the nearest centroid (L2; ties go to the lowest index), and
// optionally its squared distance (dist may be null). centroids_t is the channel-major table
// (d, k): row j holds channel j of every centroid, the layout the SIMD kernel and the CQ cache
// use. x.cols must equal centroids_t.rows.
void AssignNearestT(ConstMat x, ConstMat centroids_t, int32_t* out, float* dist = nullptr);
// The same with a centroid-major table (k, d); transposes it first.
void AssignNearest(ConstMat x, ConstMat centroids, int32_t* out, float* dist = nullptr);
// Scalar double-precision reference of AssignNearest, the truth for the SIMD kernel's tests.
void AssignNearestRef(ConstMat x, ConstMat centroids, int32_t* out, float* dist = nullptr);

// (k, d) -> (d, k): out must hold k * d floats.
void TransposeCentroids(ConstMat centroids, float* out);

}  // namespace cqkv
