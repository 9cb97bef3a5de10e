#include "model/projection.h"

#include <algorithm>

#include "kernels/matmul.h"
#include "model/rms_norm.h"

namespace cqkv {

void ProjectHeads(ConstMat xn, const WeightMatrix& w, const float* bias, const float* norm,
                  int head_dim, float eps, Mat out, Mat raw, ThreadPool& pool) {
  MatMul(xn, w, out, pool);
  if (bias != nullptr) {
    for (int64_t i = 0; i < out.rows; ++i) {
      float* o = out.Row(i);
      for (int64_t c = 0; c < out.cols; ++c) o[c] += bias[c];
    }
  }
  if (norm == nullptr) return;
  if (raw.rows > 0) {
    for (int64_t i = 0; i < out.rows; ++i) std::copy(out.Row(i), out.Row(i) + out.cols, raw.Row(i));
  }
  HeadRmsNorm(out, head_dim, norm, eps, out);
}

void ProjectHeadsBackward(const WeightMatrix& w, const float* norm, int head_dim, float eps,
                          ConstMat raw, Mat d_out, Mat dxn, bool accumulate, ThreadPool& pool) {
  // In place is safe: each row's statistics are read before any of it is written.
  if (norm != nullptr) HeadRmsNormBackward(raw, head_dim, norm, eps, d_out, d_out, false);
  MatMulTransposed(d_out, w, dxn, pool, accumulate);
}

}  // namespace cqkv
