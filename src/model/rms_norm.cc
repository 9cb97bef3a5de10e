#include "model/rms_norm.h"

#include <cmath>

namespace cqkv {

void RmsNormRows(ConstMat x, const float* w, float eps, Mat out) {
  for (int64_t i = 0; i < x.rows; ++i) {
    const float* xi = x.Row(i);
    double ss = 0;
    for (int64_t c = 0; c < x.cols; ++c) ss += static_cast<double>(xi[c]) * xi[c];
    const float inv = static_cast<float>(1.0 / std::sqrt(ss / x.cols + eps));
    float* o = out.Row(i);
    for (int64_t c = 0; c < x.cols; ++c) o[c] = xi[c] * inv * w[c];
  }
}

void RmsNormRowsBackward(ConstMat x, const float* w, float eps, ConstMat dy, Mat dx,
                         bool accumulate) {
  for (int64_t i = 0; i < x.rows; ++i) {
    const float* xi = x.Row(i);
    const float* dyi = dy.Row(i);
    double ss = 0, ux = 0;
    for (int64_t c = 0; c < x.cols; ++c) {
      ss += static_cast<double>(xi[c]) * xi[c];
      ux += static_cast<double>(dyi[c]) * w[c] * xi[c];
    }
    const double r = 1.0 / std::sqrt(ss / x.cols + eps);
    const float a = static_cast<float>(r);
    const float b = static_cast<float>(r * r * r * ux / x.cols);
    float* o = dx.Row(i);
    for (int64_t c = 0; c < x.cols; ++c) {
      const float g = a * dyi[c] * w[c] - b * xi[c];
      o[c] = accumulate ? o[c] + g : g;
    }
  }
}

namespace {

// Row i of m (heads * head_dim wide) as a (heads, head_dim) matrix.
template <typename T>
MatView<T> Heads(MatView<T> m, int64_t i, int head_dim) {
  return MatView<T>(m.Row(i), m.cols / head_dim, head_dim);
}

}  // namespace

void HeadRmsNorm(ConstMat x, int head_dim, const float* w, float eps, Mat out) {
  for (int64_t i = 0; i < x.rows; ++i) {
    RmsNormRows(Heads(x, i, head_dim), w, eps, Heads(out, i, head_dim));
  }
}

void HeadRmsNormBackward(ConstMat x, int head_dim, const float* w, float eps, ConstMat dy, Mat dx,
                         bool accumulate) {
  for (int64_t i = 0; i < x.rows; ++i) {
    RmsNormRowsBackward(Heads(x, i, head_dim), w, eps, Heads(dy, i, head_dim),
                        Heads(dx, i, head_dim), accumulate);
  }
}

}  // namespace cqkv
