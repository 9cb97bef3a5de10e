// Additive binary codebooks: a group's vector is b0 + the sum of the basis vectors B_j whose bit j
// is set in its b-bit code, so a sum of weighted vectors splits into per-bit sums of weights
// (dense masked adds; kernels/attn_cq_values.h). Fitted by weighted alternating least squares.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "util/tensor.h"

namespace cqkv {

struct AdditiveParams {
  int bits = 8;        // b: basis vectors B_1..B_b besides the offset b0
  int max_iter = 100;  // alternating (assignment, least-squares) rounds per run
  int n_init = 4;     // runs: greedy residual start, then perturbed starts; the best objective wins
  double tol = 1e-6;  // stop when the objective improves by less than tol (relative)
  uint64_t seed = 1;
};

struct AdditiveResult {
  std::vector<float> basis;  // (b + 1, d): row 0 = b0, row 1 + j = B_j
  double objective = 0;      // weighted mean squared distance to the nearest expanded centroid
  int iterations = 0;        // least-squares updates of the winning run
};

// Fits b0, B_1..B_b to the rows of x (n, d) minimising sum_i w_i ||x_i - b0 - sum_{j in code_i}
// B_j||^2 / sum_i w_i over the bases and every row's code (the 2^b patterns are searched
// exhaustively each round, so b <= 12). `weights` has n non-negative entries or is empty
// (uniform). Each round can only lower the objective: the exact assignment, then the weighted
// least-squares basis for it (normal equations over the 2^b patterns, a tiny ridge towards the
// previous basis so bits that no row uses keep their vectors). Start: greedy residual fitting
// (each bit a weighted 2-means of what the earlier bits leave). Throws cqkv::Error on non-finite
// data, negative or all-zero weights, or bad parameters.
AdditiveResult FitAdditive(ConstMat x, std::span<const float> weights,
                           const AdditiveParams& params);

// The 2^b x d centroid table of a basis (b + 1, d): centroid[code] = b0 + B_j for each set bit j
// in ascending order, in float. Deterministic, so a table stored beside its basis can be checked
// bit for bit.
void ExpandAdditive(const float* basis, int bits, int d, float* centroids);

}  // namespace cqkv
