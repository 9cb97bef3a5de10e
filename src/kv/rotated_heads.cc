#include "kv/rotated_heads.h"

#include <random>
#include <string>

#include "kernels/hadamard.h"
#include "util/error.h"

namespace cqkv {

HeadRotation::HeadRotation(int n_layers, int head_dim, uint64_t seed)
    : n_layers_(n_layers), head_dim_(head_dim) {
  CheckHadamardSize(head_dim, "KV rotation (head_dim " + std::to_string(head_dim) + ")");
  if (seed == 0) return;
  signs_.resize(static_cast<size_t>(n_layers) * head_dim);
  for (int l = 0; l < n_layers; ++l) {
    // Seeded per layer so a layer's signs do not depend on how many layers there are.
    std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(l));
    for (int c = 0; c < head_dim; ++c)
      signs_[size_t(l) * head_dim + c] = (rng() & 1) ? -1.0f : 1.0f;
  }
}

void HeadRotation::ApplySigns(int layer, float* x, int64_t heads) const {
  if (signs_.empty()) return;
  const float* s = signs_.data() + static_cast<size_t>(layer) * head_dim_;
  for (int64_t h = 0; h < heads; ++h) {
    float* row = x + h * head_dim_;
    for (int c = 0; c < head_dim_; ++c) row[c] *= s[c];
  }
}

void HeadRotation::Forward(int layer, float* x, int64_t heads) const {
  ApplySigns(layer, x, heads);
  Fwht(x, heads, head_dim_, head_dim_);
}

void HeadRotation::Inverse(int layer, float* x, int64_t heads) const {
  Fwht(x, heads, head_dim_, head_dim_);
  ApplySigns(layer, x, heads);
}

}  // namespace cqkv
