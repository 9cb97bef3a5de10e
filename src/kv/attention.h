// Causal grouped-query attention over key/value rows that a cache exposes through a row
// accessor, shared by the dense formats and by formats that dequantise a row at a time.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "kv/kv_cache.h"

namespace cqkv {

// RowOps must provide: float Score(int64_t t, int kv_head, const float* q) -> q . K[t, head]
// and void AddValue(int64_t t, int kv_head, float p, float* out) -> out += p * V[t, head].
// Parallel over (query, head); each task keeps its scores in a scratch row.
template <typename RowOps>
void CausalAttention(const KvShape& shape, const RowOps& ops, ConstMat q, int64_t pos0, Mat out,
                     ThreadPool& pool) {
  const int hd = shape.head_dim;
  const int group = shape.n_heads / shape.n_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int64_t n_tasks = q.rows * shape.n_heads;
  pool.ParallelFor(n_tasks, 1, [&](int64_t t0, int64_t t1, int) {
    std::vector<float> scores(static_cast<size_t>(pos0 + q.rows));
    for (int64_t task = t0; task < t1; ++task) {
      const int64_t i = task / shape.n_heads;
      const int h = static_cast<int>(task % shape.n_heads);
      const int kvh = h / group;
      const float* qh = q.Row(i) + static_cast<int64_t>(h) * hd;
      float* oh = out.Row(i) + static_cast<int64_t>(h) * hd;
      const int64_t n_ctx = pos0 + i + 1;
      float max_s = -INFINITY;
      for (int64_t t = 0; t < n_ctx; ++t) {
        scores[t] = ops.Score(t, kvh, qh) * scale;
        max_s = std::max(max_s, scores[t]);
      }
      double sum = 0;
      for (int64_t t = 0; t < n_ctx; ++t) {
        scores[t] = std::exp(scores[t] - max_s);
        sum += scores[t];
      }
      const float inv = static_cast<float>(1.0 / sum);
      for (int d = 0; d < hd; ++d) oh[d] = 0.0f;
      for (int64_t t = 0; t < n_ctx; ++t) ops.AddValue(t, kvh, scores[t] * inv, oh);
    }
  });
}

}  // namespace cqkv
