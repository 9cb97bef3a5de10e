#include "kv/tq_qjl.h"

#include <cmath>
#include <numbers>
#include <random>

#include "kernels/ops.h"

namespace cqkv {

QjlSketch::QjlSketch(int n_layers, int dim, uint64_t seed) : dim_(dim) {
  s_.resize(static_cast<size_t>(n_layers) * dim * dim);
  for (int l = 0; l < n_layers; ++l) {
    std::mt19937_64 rng(seed * 0xD1B54A32D192ED03ull + static_cast<uint64_t>(l));
    std::normal_distribution<float> nd;
    float* m = s_.data() + static_cast<size_t>(l) * dim * dim;
    for (int64_t i = 0; i < int64_t{dim} * dim; ++i) m[i] = nd(rng);
  }
}

void QjlSketch::Signs(int layer, const float* r, uint8_t* bits) const {
  const float* m = s_.data() + static_cast<size_t>(layer) * dim_ * dim_;
  for (int i = 0; i < (dim_ + 7) / 8; ++i) bits[i] = 0;
  for (int i = 0; i < dim_; ++i) {
    if (Dot(m + int64_t{i} * dim_, r, dim_) >= 0.0f) bits[i / 8] |= uint8_t(1u << (i % 8));
  }
}

void QjlSketch::Project(int layer, const float* q, float* out) const {
  const float* m = s_.data() + static_cast<size_t>(layer) * dim_ * dim_;
  for (int i = 0; i < dim_; ++i) out[i] = Dot(m + int64_t{i} * dim_, q, dim_);
}

void QjlSketch::SignsToFloats(const uint8_t* bits, float scale, float* out) const {
  for (int i = 0; i < dim_; ++i) out[i] = (bits[i / 8] >> (i % 8)) & 1 ? scale : -scale;
}

double QjlSketch::EstimatorScale() const { return std::sqrt(std::numbers::pi / 2) / dim_; }

void QjlSketch::ProjectTransposed(int layer, const float* w, float* out) const {
  const float* m = s_.data() + static_cast<size_t>(layer) * dim_ * dim_;
  for (int c = 0; c < dim_; ++c) out[c] = 0.0f;
  for (int i = 0; i < dim_; ++i) Axpy(w[i], m + int64_t{i} * dim_, out, dim_);
}

}  // namespace cqkv
