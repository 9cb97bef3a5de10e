#include "quant/residual_codebook.h"

#include <algorithm>

#include "util/error.h"

namespace cqkv {

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
  const size_t c = set.config.channels;
  std::copy(r.stages.begin(), r.stages.end(),
            set.value_basis[static_cast<size_t>(layer)].begin() +
                static_cast<int64_t>(group) * set.value_basis_rows() * c);
  ExpandResidual(r.stages.data(), set.config.bits, set.config.channels,
                 set.centroids[static_cast<size_t>(layer) * 2 + 1].data() +
                     static_cast<size_t>(group) * set.config.n_centroids() * c);
  return r.objective;
}

}  // namespace cqkv
