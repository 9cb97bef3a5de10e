#include "quant/value_basis.h"

#include <algorithm>

#include "quant/additive.h"
#include "quant/residual.h"
#include "util/error.h"

namespace cqkv {

void ExpandValueBasis(ValueKind kind, int bits, int c, const float* basis, float* centroids) {
  CQKV_CHECK(kind != ValueKind::kKMeans, "k-means values have no basis to expand");
  if (kind == ValueKind::kResidual) {
    ExpandResidual(basis, bits, c, centroids);
  } else {
    ExpandAdditive(basis, bits, c, centroids);
  }
}

void InitValueBasis(CodebookSet& set, ValueKind kind) {
  const char* name = ValueKindName(kind);
  CQKV_CHECK(kind != ValueKind::kKMeans, "k-means values have no basis");
  CQKV_CHECK(set.config.bits <= 12, "{} values: {} needs codes of at most 12 bits", name,
             set.config.Name());
  CQKV_CHECK(kind != ValueKind::kResidual || set.config.bits % 2 == 0,
             "{} values: {} needs an even code size (two stages of 2^(b/2))", name,
             set.config.Name());
  CQKV_CHECK(set.centroids.size() == static_cast<size_t>(2 * set.n_layers),
             "{} values: {} centroid tables for {} layers", name, set.centroids.size(),
             set.n_layers);
  set.values = kind;
  set.value_basis.assign(static_cast<size_t>(set.n_layers),
                         std::vector<float>(static_cast<size_t>(set.n_groups()) *
                                            set.value_basis_rows() * set.config.channels));
}

void SetValueBasis(CodebookSet& set, int layer, int group, const float* basis) {
  const int c = set.config.channels, rows = set.value_basis_rows();
  std::copy_n(
      basis, rows * c,
      set.value_basis[static_cast<size_t>(layer)].data() + static_cast<int64_t>(group) * rows * c);
  ExpandValueBasis(set.values, set.config.bits, c, basis,
                   set.centroids[static_cast<size_t>(layer) * 2 + 1].data() +
                       static_cast<int64_t>(group) * set.config.n_centroids() * c);
}

}  // namespace cqkv
