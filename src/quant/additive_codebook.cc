#include "quant/additive_codebook.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "util/error.h"

namespace cqkv {
namespace {

float* GroupBasis(CodebookSet& set, int layer, int group) {
  return set.value_basis[static_cast<size_t>(layer)].data() +
         static_cast<size_t>(group) * (set.config.bits + 1) * set.config.channels;
}

float* GroupTable(CodebookSet& set, int layer, int group) {
  return set.centroids[static_cast<size_t>(layer) * 2 + 1].data() +
         static_cast<size_t>(group) * set.config.n_centroids() * set.config.channels;
}

}  // namespace

void InitAdditiveValues(CodebookSet& set) {
  CQKV_CHECK(set.config.bits <= 12, "additive values: {} needs codes of at most 12 bits",
             set.config.Name());
  CQKV_CHECK(set.centroids.size() == static_cast<size_t>(2 * set.n_layers),
             "additive values: {} centroid tables for {} layers", set.centroids.size(),
             set.n_layers);
  set.values = ValueKind::kAdditive;
  set.value_basis.assign(static_cast<size_t>(set.n_layers),
                         std::vector<float>(static_cast<size_t>(set.n_groups()) *
                                            (set.config.bits + 1) * set.config.channels));
}

double FitAdditiveValueGroup(ConstMat x, std::span<const float> weights,
                             const AdditiveParams& params, CodebookSet& set, int layer, int group) {
  CQKV_CHECK(set.values == ValueKind::kAdditive && params.bits == set.config.bits &&
                 x.cols == set.config.channels,
             "additive values: fit of {} bits x {} channels into a {} set of {}", params.bits,
             x.cols, ValueKindName(set.values), set.config.Name());
  const AdditiveResult r = FitAdditive(x, weights, params);
  std::copy(r.basis.begin(), r.basis.end(), GroupBasis(set, layer, group));
  ExpandAdditive(r.basis.data(), set.config.bits, set.config.channels,
                 GroupTable(set, layer, group));
  return r.objective;
}

void RandomAdditiveValues(CodebookSet& set, uint64_t seed) {
  InitAdditiveValues(set);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f / std::sqrt(static_cast<float>(set.config.bits)));
  for (int l = 0; l < set.n_layers; ++l) {
    for (float& v : set.value_basis[l]) v = nd(rng);
    for (int g = 0; g < set.n_groups(); ++g) {
      ExpandAdditive(GroupBasis(set, l, g), set.config.bits, set.config.channels,
                     GroupTable(set, l, g));
    }
  }
}

}  // namespace cqkv
