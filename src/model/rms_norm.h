// RMSNorm over the rows of a matrix (and per attention head, qwen3's Q/K norm) and its input
// gradient, shared by the forward pass and the K/V gradient pass (the backward must
// differentiate exactly the formula the forward uses).
#pragma once

#include "util/tensor.h"

namespace cqkv {

// out = x / sqrt(mean(x^2) + eps) * w, row by row; mean of squares accumulated in double.
void RmsNormRows(ConstMat x, const float* w, float eps, Mat out);
// dx (+)= d/dx of RmsNormRows(x) given dy: with r = (mean(x^2) + eps)^-1/2 and u = dy * w,
// dx = r u - r^3 x (u . x) / cols. Accumulates into dx when `accumulate`.
void RmsNormRowsBackward(ConstMat x, const float* w, float eps, ConstMat dy, Mat dx,
                         bool accumulate);

// Per-head RMSNorm: each row of x (rows, heads * head_dim) holds `heads` vectors of head_dim
// channels, each normalised on its own and scaled by the shared w (head_dim). out may be x.
void HeadRmsNorm(ConstMat x, int head_dim, const float* w, float eps, Mat out);
// Its input gradient, as RmsNormRowsBackward per head.
void HeadRmsNormBackward(ConstMat x, int head_dim, const float* w, float eps, ConstMat dy, Mat dx,
                         bool accumulate);

}  // namespace cqkv
