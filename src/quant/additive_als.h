// Alternating least squares for codebooks whose centroids are sums of basis rows (additive binary
// codes, quant/additive.h; two-stage residual codes, quant/residual.h): exact assignment over the
// expanded table, then the weighted least-squares basis for that assignment. Shared machinery;
// the callers choose the layout (which rows each code sums) and the start.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "util/tensor.h"

namespace cqkv {

// The rows of x with positive weight (uniform when no weights are given), weights in double.
struct WeightedRows {
  ConstMat x;                 // (n, d), all rows
  std::vector<int64_t> rows;  // indices of the rows with w > 0
  std::vector<double> w;      // their weights
  double total = 0;           // sum of w
};

// Checks x is non-empty and finite and the weights (n entries or empty) are >= 0 and not all
// zero; `what`
// ("additive fit") prefixes the error.
WeightedRows PrepareWeightedRows(ConstMat x, std::span<const float> weights, const char* what);

// Centroid `code` = sum of basis rows terms[offsets[code] .. offsets[code + 1]) (at least one),
// the first copied and the rest added in this order, in float, so an expansion is reproducible
// bit for bit.
struct SumLayout {
  int n_basis = 0;           // m: basis rows
  std::vector<int> offsets;  // (n_codes + 1)
  std::vector<int> terms;    // basis row indices, offsets.back() entries
  int n_codes() const { return static_cast<int>(offsets.size()) - 1; }
};

// basis (n_basis, d) -> centroids (n_codes, d).
void ExpandSum(const SumLayout& layout, const float* basis, int d, float* centroids);

struct SumFit {
  std::vector<float> basis;     // (n_basis, d)
  double objective = 0;         // weighted mean squared distance to the nearest centroid
  int iterations = 0;           // least-squares updates until `basis` was reached
  std::vector<double> history;  // objective after each assignment, in order (never rises
                                // beyond float rounding of the basis)
};

// Alternates from `basis` (double, (n_basis, d)): assign every row to its nearest expanded
// centroid, then solve the weighted normal equations (n_basis x n_basis, built from the per-code
// weight sums, so shared by all d channels) with a tiny ridge towards the current basis, which
// keeps rows no code in use selects (and the offset between stages) where they were and so
// cannot raise the objective. Stops after max_iter updates, or when the objective improves by
// less than tol (relative); returns the best basis seen.
SumFit RefineSum(const WeightedRows& data, const SumLayout& layout, std::vector<double> basis,
                 int max_iter, double tol);

}  // namespace cqkv
