#include "kernels/rope.h"

#include <cassert>
#include <cmath>

#include "util/error.h"

namespace cqkv {
namespace {

inline void PairIndex(RopeType type, int i, int half, int* a, int* b) {
  *a = type == RopeType::kNorm ? 2 * i : i;
  *b = type == RopeType::kNorm ? 2 * i + 1 : i + half;
}

// Angle per unit position of pair i (see RopeParams).
inline double Omega(const RopeParams& p, int i, int head_dim) {
  double w = static_cast<double>(p.freq_scale) *
             std::pow(static_cast<double>(p.freq_base), -2.0 * i / head_dim);
  if (!p.freq_factors.empty()) w /= static_cast<double>(p.freq_factors[i]);
  return w;
}

}  // namespace

void CheckRopeParams(const RopeParams& p, int head_dim, const char* what) {
  CQKV_CHECK(head_dim > 0 && head_dim % 2 == 0, "{}: RoPE needs an even head size, got {}", what,
             head_dim);
  CQKV_CHECK(std::isfinite(p.freq_base) && p.freq_base > 0,
             "{}: RoPE frequency base {} must be finite and > 0", what, p.freq_base);
  CQKV_CHECK(std::isfinite(p.freq_scale) && p.freq_scale > 0,
             "{}: RoPE frequency scale {} must be finite and > 0", what, p.freq_scale);
  if (p.freq_factors.empty()) return;
  CQKV_CHECK(static_cast<int>(p.freq_factors.size()) == head_dim / 2,
             "{}: {} RoPE frequency factors for a head size of {} (expected {})", what,
             p.freq_factors.size(), head_dim, head_dim / 2);
  for (size_t i = 0; i < p.freq_factors.size(); ++i) {
    CQKV_CHECK(std::isfinite(p.freq_factors[i]) && p.freq_factors[i] > 0,
               "{}: RoPE frequency factor {} is {}, must be finite and > 0", what, i,
               p.freq_factors[i]);
  }
}

void ApplyRope(float* x, int n_heads, int head_dim, int64_t pos, const RopeParams& p) {
  assert(p.freq_factors.empty() || static_cast<int>(p.freq_factors.size()) == head_dim / 2);
  const int half = head_dim / 2;
  for (int i = 0; i < half; ++i) {
    const double theta = static_cast<double>(pos) * Omega(p, i, head_dim);
    const float c = static_cast<float>(std::cos(theta));
    const float s = static_cast<float>(std::sin(theta));
    int a, b;
    PairIndex(p.type, i, half, &a, &b);
    for (int h = 0; h < n_heads; ++h) {
      float* xh = x + static_cast<int64_t>(h) * head_dim;
      const float x0 = xh[a], x1 = xh[b];
      xh[a] = x0 * c - x1 * s;
      xh[b] = x0 * s + x1 * c;
    }
  }
}

RopeTable::RopeTable(int head_dim, int64_t max_pos, const RopeParams& p)
    : head_dim_(head_dim), max_pos_(max_pos), type_(p.type) {
  assert(p.freq_factors.empty() || static_cast<int>(p.freq_factors.size()) == head_dim / 2);
  const int half = head_dim / 2;
  std::vector<double> omega(static_cast<size_t>(half));
  for (int i = 0; i < half; ++i) omega[i] = Omega(p, i, head_dim);
  cos_.resize(static_cast<size_t>(max_pos * half));
  sin_.resize(cos_.size());
  for (int64_t pos = 0; pos < max_pos; ++pos) {
    for (int i = 0; i < half; ++i) {
      const double theta = static_cast<double>(pos) * omega[i];
      cos_[pos * half + i] = static_cast<float>(std::cos(theta));
      sin_[pos * half + i] = static_cast<float>(std::sin(theta));
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
