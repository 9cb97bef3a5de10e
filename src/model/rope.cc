#include "model/rope.h"

#include <cmath>

namespace cqkv {

void ApplyRope(float* x, int n_heads, int head_dim, int64_t pos, float freq_base, RopeType type) {
  const int half = head_dim / 2;
  for (int i = 0; i < half; ++i) {
    const double theta = static_cast<double>(pos) * std::pow(static_cast<double>(freq_base),
                                                             -2.0 * i / head_dim);
    const float c = static_cast<float>(std::cos(theta));
    const float s = static_cast<float>(std::sin(theta));
    const int a = type == RopeType::kNorm ? 2 * i : i;
    const int b = type == RopeType::kNorm ? 2 * i + 1 : i + half;
    for (int h = 0; h < n_heads; ++h) {
      float* xh = x + static_cast<int64_t>(h) * head_dim;
      const float x0 = xh[a], x1 = xh[b];
      xh[a] = x0 * c - x1 * s;
      xh[b] = x0 * s + x1 * c;
    }
  }
}

}  // namespace cqkv
