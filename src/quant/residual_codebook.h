// Residual value codebooks inside a CodebookSet: installing fitted stages (the V centroid tables
// become their expansions, so every path that reads centroids works unchanged).
#pragma once

#include <cstdint>
#include <span>

#include "quant/codebook.h"
#include "quant/residual.h"
#include "util/tensor.h"

namespace cqkv {

// Marks `set` (config, n_layers, shape and centroids already sized) as having residual values and
// sizes its stages (CodebookSet::value_basis), all zero; FitResidualValueGroup fills them.
// Throws cqkv::Error for an odd b or b > 12.
void InitResidualValues(CodebookSet& set);

// Fits one value group's stages to x (n, c) with FitResidual (params.bits must be the set's b),
// writes them and their expanded centroid table into `set` and returns the objective.
double FitResidualValueGroup(ConstMat x, std::span<const float> weights,
                             const ResidualParams& params, CodebookSet& set, int layer, int group);

// InitResidualValues, then N(0, 1/2) stages (so A[i] + B[j] has unit variance per channel) and
// their expansions: random residual values for benchmarks and tests.
void RandomResidualValues(CodebookSet& set, uint64_t seed);

}  // namespace cqkv
