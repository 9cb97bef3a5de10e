#include "quant/additive_codebook.h"

#include <cmath>
#include <random>

#include "quant/value_basis.h"
#include "util/error.h"

namespace cqkv {

void InitAdditiveValues(CodebookSet& set) { InitValueBasis(set, ValueKind::kAdditive); }

double FitAdditiveValueGroup(ConstMat x, std::span<const float> weights,
                             const AdditiveParams& params, CodebookSet& set, int layer, int group) {
  CQKV_CHECK(set.values == ValueKind::kAdditive && params.bits == set.config.bits &&
                 x.cols == set.config.channels,
             "additive values: fit of {} bits x {} channels into a {} set of {}", params.bits,
             x.cols, ValueKindName(set.values), set.config.Name());
  const AdditiveResult r = FitAdditive(x, weights, params);
  SetValueBasis(set, layer, group, r.basis.data());
  return r.objective;
}

void RandomAdditiveValues(CodebookSet& set, uint64_t seed) {
  InitAdditiveValues(set);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f / std::sqrt(static_cast<float>(set.config.bits)));
  // Group after group in memory order, so the random stream fills the bases as before.
  std::vector<float> basis(static_cast<size_t>(set.value_basis_rows()) * set.config.channels);
  for (int l = 0; l < set.n_layers; ++l) {
    for (int g = 0; g < set.n_groups(); ++g) {
      for (float& v : basis) v = nd(rng);
      SetValueBasis(set, l, g, basis.data());
    }
  }
}

}  // namespace cqkv
