// One attention input projection before RoPE (matrix, optional bias, optional per-head RMSNorm)
// and its input gradient, shared by the forward pass and the K/V gradient pass so both compute
// exactly what llama.cpp's qwen2 (bias) and qwen3 (Q/K norm) graphs compute.
#pragma once

#include "util/tensor.h"
#include "util/thread_pool.h"

namespace cqkv {

// out = W xn (+ bias), then, when `norm` is set, each head of head_dim channels RMS-normalised
// with weight `norm` (head_dim) and `eps`. xn (n, dim); out (n, W.rows). `raw` receives the
// value before the norm when it has rows (the backward's input; out's shape), else is unused.
// bias (W.rows) and norm may be null.
void ProjectHeads(ConstMat xn, const WeightMatrix& w, const float* bias, const float* norm,
                  int head_dim, float eps, Mat out, Mat raw, ThreadPool& pool);

// d xn (+)= W^T d raw, with d raw = d out through the norm (needs `raw` from ProjectHeads; d_out
// is overwritten by d raw) or d out itself when `norm` is null. The bias only passes the
// gradient through. dxn (n, dim).
void ProjectHeadsBackward(const WeightMatrix& w, const float* norm, int head_dim, float eps,
                          ConstMat raw, Mat d_out, Mat dxn, bool accumulate, ThreadPool& pool);

}  // namespace cqkv
