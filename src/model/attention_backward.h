// Backward of causal grouped-query attention for the K/V gradient pass (model/backward.h),
// recomputing probabilities row by row instead of keeping n x n matrices.
#pragma once

#include "kv/kv_cache.h"
#include "util/tensor.h"
#include "util/thread_pool.h"

namespace cqkv {

// Backward of causal attention with query i at position i over keys 0..i (a fresh window),
// scores scaled by 1/sqrt(head_dim), query head h reading KV head h / (n_heads / n_kv_heads).
// q, dout, dq: (n, n_heads*head_dim) with q after RoPE; k, v, dk, dv: (n, kv_dim), k after
// RoPE. Writes dq = dL/dq, dk = dL/dk, dv = dL/dv (overwritten, not accumulated).
// Two passes, both parallel and free of write conflicts: per (query, head) for dq and the row
// statistics (log-sum-exp, D = dout . out), then per (key, KV head) for dk and dv.
void AttentionBackward(const KvShape& shape, ConstMat q, ConstMat k, ConstMat v, ConstMat dout,
                       Mat dq, Mat dk, Mat dv, ThreadPool& pool);

}  // namespace cqkv
