#include "quant/residual_codebook.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "util/error.h"

namespace cqkv {
namespace {

float* GroupStages(CodebookSet& set, int layer, int group) {
  return set.value_basis[static_cast<size_t>(layer)].data() +
         static_cast<int64_t>(group) * set.value_basis_rows() * set.config.channels;
}

float* GroupTable(CodebookSet& set, int layer, int group) {
  return set.centroids[static_cast<size_t>(layer) * 2 + 1].data() +
         static_cast<int64_t>(group) * set.config.n_centroids() * set.config.channels;
}

}  // namespace

void InitResidualValues(CodebookSet& set) {
  CQKV_CHECK(set.config.bits % 2 == 0 && set.config.bits <= 12,
             "residual values: {} needs an even code size of at most 12 bits", set.config.Name());
  CQKV_CHECK(set.centroids.size() == static_cast<size_t>(2 * set.n_layers),
             "residual values: {} centroid tables for {} layers", set.centroids.size(),
             set.n_layers);
  set.values = ValueKind::kResidual;
  set.value_basis.assign(static_cast<size_t>(set.n_layers),
                         std::vector<float>(static_cast<size_t>(set.n_groups()) *
                                            set.value_basis_rows() * set.config.channels));
}

double FitResidualValueGroup(ConstMat x, std::span<const float> weights,
                             const ResidualParams& params, CodebookSet& set, int layer, int group) {
  CQKV_CHECK(set.values == ValueKind::kResidual && params.bits == set.config.bits &&
                 x.cols == set.config.channels,
             "residual values: fit of {} bits x {} channels into a {} set of {}", params.bits,
             x.cols, ValueKindName(set.values), set.config.Name());
  const ResidualResult r = FitResidual(x, weights, params);
  std::copy(r.stages.begin(), r.stages.end(), GroupStages(set, layer, group));
  ExpandResidual(r.stages.data(), set.config.bits, set.config.channels,
                 GroupTable(set, layer, group));
  return r.objective;
}

void RandomResidualValues(CodebookSet& set, uint64_t seed) {
  InitResidualValues(set);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.0f, std::sqrt(0.5f));
  for (int l = 0; l < set.n_layers; ++l) {
    for (float& v : set.value_basis[l]) v = nd(rng);
    for (int g = 0; g < set.n_groups(); ++g) {
      ExpandResidual(GroupStages(set, l, g), set.config.bits, set.config.channels,
                     GroupTable(set, l, g));
    }
  }
}

}  // namespace cqkv
