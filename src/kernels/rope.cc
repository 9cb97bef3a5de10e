#include "kernels/rope.h"

#include <cassert>
#include <cmath>

namespace cqkv {
namespace {

inline void PairIndex(RopeType type, int i, int half, int* a, int* b) {
  *a = type == RopeType::kNorm ? 2 * i : i;
  *b = type == RopeType::kNorm ? 2 * i + 1 : i + half;
}

inline double Theta(int64_t pos, int i, int head_dim, float base) {
  return static_cast<double>(pos) * std::pow(static_cast<double>(base), -2.0 * i / head_dim);
}

}  // namespace

void ApplyRope(float* x, int n_heads, int head_dim, int64_t pos, float freq_base, RopeType type) {
  const int half = head_dim / 2;
  for (int i = 0; i < half; ++i) {
    const double theta = Theta(pos, i, head_dim, freq_base);
    const float c = static_cast<float>(std::cos(theta));
    const float s = static_cast<float>(std::sin(theta));
    int a, b;
    PairIndex(type, i, half, &a, &b);
    for (int h = 0; h < n_heads; ++h) {
      float* xh = x + static_cast<int64_t>(h) * head_dim;
      const float x0 = xh[a], x1 = xh[b];
      xh[a] = x0 * c - x1 * s;
      xh[b] = x0 * s + x1 * c;
    }
  }
}

RopeTable::RopeTable(int head_dim, int64_t max_pos, float freq_base, RopeType type)
    : head_dim_(head_dim), max_pos_(max_pos), type_(type) {
  const int half = head_dim / 2;
  cos_.resize(static_cast<size_t>(max_pos * half));
  sin_.resize(cos_.size());
  for (int64_t p = 0; p < max_pos; ++p) {
    for (int i = 0; i < half; ++i) {
      const double theta = Theta(p, i, head_dim, freq_base);
      cos_[p * half + i] = static_cast<float>(std::cos(theta));
      sin_[p * half + i] = static_cast<float>(std::sin(theta));
    }
  }
}

void RopeTable::Rotate(float* head, int64_t pos, bool inverse) const {
  assert(pos >= 0 && pos < max_pos_);
  const int half = head_dim_ / 2;
  const float* c = cos_.data() + pos * half;
  const float* s = sin_.data() + pos * half;
  const float sign = inverse ? -1.0f : 1.0f;
  for (int i = 0; i < half; ++i) {
    int a, b;
    PairIndex(type_, i, half, &a, &b);
    const float x0 = head[a], x1 = head[b], si = sign * s[i];
    head[a] = x0 * c[i] - x1 * si;
    head[b] = x0 * si + x1 * c[i];
  }
}

}  // namespace cqkv
