// Additive value codebooks inside a CodebookSet: installing fitted or random bases (the V
// centroid tables become their expansions) and the per-group fit calibration calls.
#pragma once

#include <cstdint>
#include <span>

#include "quant/additive.h"
#include "quant/codebook.h"

namespace cqkv {

// Marks `set` (config, n_layers, shape and centroids already sized) as having additive values and
// sizes its bases, all zero; FitAdditiveValueGroup or RandomAdditiveValues fill them.
void InitAdditiveValues(CodebookSet& set);

// Fits the value group `group` of `layer` to the rows of x (n, c) with weights (may be empty):
// writes its basis and its expanded centroid table into `set` and returns the objective.
// Different groups touch disjoint memory, so calls for different groups may run concurrently.
double FitAdditiveValueGroup(ConstMat x, std::span<const float> weights,
                             const AdditiveParams& params, CodebookSet& set, int layer, int group);

// Random bases N(0, 1/b) for every value group, tables expanded (timing and tests: attention
// cost depends on the code layout, not on the values).
void RandomAdditiveValues(CodebookSet& set, uint64_t seed);

}  // namespace cqkv
