// Building blocks of the K/V gradient pass (model/backward.h): input-gradient matmuls through
// stored weights of any type, RMSNorm backward, and causal GQA attention backward that
// recomputes probabilities row by row instead of keeping n x n matrices.
#pragma once

#include <cstdint>

#include "kv/kv_cache.h"
#include "util/tensor.h"
#include "util/thread_pool.h"

namespace cqkv {

// y = x W (+ y when `accumulate`), the input gradient of y' = x' W^T: x (n, w.rows),
// y (n, w.cols). Threads split W's columns; quantised weights are widened one block of rows at a
// time per thread (never in full) and multiplied with single-threaded BLAS sgemm.
void MatMulTransposed(ConstMat x, const WeightMatrix& w, Mat y, ThreadPool& pool,
                      bool accumulate = false);
// Scalar reference (double accumulation) for tests.
void MatMulTransposedRef(ConstMat x, const WeightMatrix& w, Mat y);

// out = x / sqrt(mean(x^2) + eps) * w, row by row (the forward pass's formula).
void RmsNormRows(ConstMat x, const float* w, float eps, Mat out);
// dx (+)= d/dx of RmsNormRows(x) given dy: with r = (mean(x^2) + eps)^-1/2 and u = dy * w,
// dx = r u - r^3 x (u . x) / cols. Accumulates into dx when `accumulate`.
void RmsNormRowsBackward(ConstMat x, const float* w, float eps, ConstMat dy, Mat dx,
                         bool accumulate);

// Backward of causal attention with query i at position i over keys 0..i (a fresh window),
// scores scaled by 1/sqrt(head_dim), query head h reading KV head h / (n_heads / n_kv_heads).
// q, dout, dq: (n, n_heads*head_dim) with q after RoPE; k, v, dk, dv: (n, kv_dim), k after
// RoPE. Writes dq = dL/dq, dk = dL/dk, dv = dL/dv (overwritten, not accumulated).
// Two passes, both parallel and free of write conflicts: per (query, head) for dq and the row
// statistics (log-sum-exp, D = dout . out), then per (key, KV head) for dk and dv.
void AttentionBackward(const KvShape& shape, ConstMat q, ConstMat k, ConstMat v, ConstMat dout,
                       Mat dq, Mat dk, Mat dv, ThreadPool& pool);

}  // namespace cqkv
