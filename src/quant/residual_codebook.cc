#include "quant/residual_codebook.h"

#include <cmath>
#include <random>

#include "quant/value_basis.h"
#include "util/error.h"

namespace cqkv {

void InitResidualValues(CodebookSet& set) { InitValueBasis(set, ValueKind::kResidual); }

double FitResidualValueGroup(ConstMat x, std::span<const float> weights,
                             const ResidualParams& params, CodebookSet& set, int layer, int group) {
  CQKV_CHECK(set.values == ValueKind::kResidual && params.bits == set.config.bits &&
                 x.cols == set.config.channels,
             "residual values: fit of {} bits x {} channels into a {} set of {}", params.bits,
             x.cols, ValueKindName(set.values), set.config.Name());
  const ResidualResult r = FitResidual(x, weights, params);
  SetValueBasis(set, layer, group, r.stages.data());
  return r.objective;
}

void RandomResidualValues(CodebookSet& set, uint64_t seed) {
  InitResidualValues(set);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.0f, std::sqrt(0.5f));
  std::vector<float> stages(static_cast<size_t>(set.value_basis_rows()) * set.config.channels);
  for (int l = 0; l < set.n_layers; ++l) {
    for (int g = 0; g < set.n_groups(); ++g) {
      for (float& v : stages) v = nd(rng);
      SetValueBasis(set, l, g, stages.data());
    }
  }
}

}  // namespace cqkv
