#include "kv/cq_random_residual.h"

#include <cmath>
#include <random>

#include "util/error.h"

namespace cqkv {

void RandomResidualValues(CodebookSet& set, uint64_t seed) {
  CQKV_CHECK(set.config.bits == 8, "residual values: {}-bit codes, the nibble stages need 8",
             set.config.bits);
  set.values = ValueKind::kResidual;
  const int c = set.config.channels, rows = set.value_basis_rows();
  std::mt19937_64 rng(seed);
  // Two stages of variance 1/2 each: values ~N(0, 1) like RandomCodebooks' centroids.
  std::normal_distribution<float> nd(0.0f, std::sqrt(0.5f));
  set.value_basis.assign(static_cast<size_t>(set.n_layers), {});
  for (int l = 0; l < set.n_layers; ++l) {
    auto& basis = set.value_basis[static_cast<size_t>(l)];
    basis.resize(static_cast<size_t>(set.n_groups()) * rows * c);
    for (float& v : basis) v = nd(rng);
    for (int g = 0; g < set.n_groups(); ++g) {
      const float* a = set.ValueBasis(l, g);
      const float* b = a + 16 * c;
      float* table =
          set.centroids[static_cast<size_t>(l) * 2 + 1].data() + static_cast<size_t>(g) * 256 * c;
      for (int code = 0; code < 256; ++code) {
        for (int d = 0; d < c; ++d)
          table[code * c + d] = a[(code >> 4) * c + d] + b[(code & 15) * c + d];
      }
    }
  }
}

}  // namespace cqkv
