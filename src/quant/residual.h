// Two-stage residual value codebooks: a b-bit code is two b/2-bit halves, and its vector is
// A[code >> b/2] + B[code & (2^(b/2) - 1)], 2 * 2^(b/2) free vectors (32 at b = 8) instead of
// 2^b. Aggregating values then needs only two 2^(b/2)-bin weight histograms per group. Fitted
// by weighted alternating least squares over both stages jointly (quant/additive_als.h).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "util/tensor.h"

namespace cqkv {

struct ResidualParams {
  int bits = 8;        // b, even: two stages of 2^(b/2) vectors
  int max_iter = 100;  // alternating (assignment, least-squares) rounds per run
  int n_init = 1;      // runs from differently seeded k-means starts; the best objective wins
  double tol = 1e-6;   // stop when the objective improves by less than tol (relative)
  uint64_t seed = 1;
};

struct ResidualResult {
  std::vector<float> stages;    // (2 * 2^(b/2), d): rows 0..2^(b/2)-1 stage A, then stage B
  double objective = 0;         // weighted mean squared distance to the nearest expanded centroid
  int iterations = 0;           // least-squares updates of the winning run
  std::vector<double> history;  // the winning run's objective after each assignment
};

// Fits the stages to the rows of x (n, d) minimising sum_i w_i ||x_i - A[a_i] - B[b_i]||^2 /
// sum_i w_i over both stages and every row's pair (a_i, b_i), searched exhaustively over all
// 2^b pairs each round (so b <= 12). `weights` has n non-negative entries or is empty (uniform).
// Start: weighted k-means of x into 2^(b/2) (stage A), then of what A leaves (stage B); then
// exact assignment and the joint weighted least-squares update of all stage vectors alternate,
// which never raises the objective. A and B are determined only up to a common offset (A + o,
// B - o). Throws cqkv::Error on non-finite data, negative or all-zero weights, odd b or bad
// parameters.
ResidualResult FitResidual(ConstMat x, std::span<const float> weights,
                           const ResidualParams& params);

// The 2^b x d centroid table of stages (2 * 2^(b/2), d): centroid[i * 2^(b/2) + j] = A[i] + B[j]
// in float. Deterministic, so a table stored beside its stages can be checked bit for bit.
void ExpandResidual(const float* stages, int bits, int d, float* centroids);

}  // namespace cqkv
