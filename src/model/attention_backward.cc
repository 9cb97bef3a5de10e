#include "model/attention_backward.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <vector>

#include "kernels/ops.h"

namespace cqkv {
namespace {

// Maps task t in [0, n) so that any contiguous range of tasks mixes cheap and expensive rows
// of a causal triangle (0, n-1, 1, n-2, ...): ThreadPool hands each thread one contiguous chunk,
// and in plain order the thread with the last rows would do three quarters of the work.
inline int64_t Balanced(int64_t t, int64_t n) { return (t % 2 == 0) ? t / 2 : n - 1 - t / 2; }

}  // namespace

void AttentionBackward(const KvShape& shape, ConstMat q, ConstMat k, ConstMat v, ConstMat dout,
                       Mat dq, Mat dk, Mat dv, ThreadPool& pool) {
  const int64_t n = q.rows;
  const int hd = shape.head_dim;
  const int n_heads = shape.n_heads;
  const int n_kv = shape.n_kv_heads;
  const int group = n_heads / n_kv;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  assert(k.rows == n && v.rows == n && dout.rows == n && dk.rows == n && dv.rows == n);
  // Per (query, head): log-sum-exp of the scaled scores and D = sum_t p_t dp_t = dout . out.
  std::vector<float> lse(static_cast<size_t>(n * n_heads)), dsum(lse.size());

  // Pass 1, per (query i, head h): p_t = softmax_t(scale q_i . k_t), dp_t = dout_i . v_t,
  // ds_t = p_t (dp_t - D), dq_i = scale sum_t ds_t k_t.
  pool.ParallelFor(n * n_heads, 1, [&](int64_t t0, int64_t t1, int) {
    std::vector<float> p(static_cast<size_t>(n)), dp(static_cast<size_t>(n));
    for (int64_t task = t0; task < t1; ++task) {
      const int64_t i = Balanced(task / n_heads, n);
      const int h = static_cast<int>(task % n_heads);
      const int64_t koff = static_cast<int64_t>(h / group) * hd;
      const float* qh = q.Row(i) + int64_t{h} * hd;
      const float* doh = dout.Row(i) + int64_t{h} * hd;
      float max_s = -INFINITY;
      for (int64_t t = 0; t <= i; ++t) {
        p[t] = Dot(k.Row(t) + koff, qh, hd) * scale;
        max_s = std::max(max_s, p[t]);
      }
      double sum = 0;
      for (int64_t t = 0; t <= i; ++t) {
        p[t] = std::exp(p[t] - max_s);
        sum += p[t];
      }
      const float inv = static_cast<float>(1.0 / sum);
      double d = 0;
      for (int64_t t = 0; t <= i; ++t) {
        p[t] *= inv;
        dp[t] = Dot(v.Row(t) + koff, doh, hd);
        d += static_cast<double>(p[t]) * dp[t];
      }
      float* dqh = dq.Row(i) + int64_t{h} * hd;
      std::fill(dqh, dqh + hd, 0.0f);
      const float df = static_cast<float>(d);
      for (int64_t t = 0; t <= i; ++t) Axpy(scale * p[t] * (dp[t] - df), k.Row(t) + koff, dqh, hd);
      lse[i * n_heads + h] = max_s + static_cast<float>(std::log(sum));
      dsum[i * n_heads + h] = df;
    }
  });

  // Pass 2, per (key t, KV head): sum over the group's query heads and the queries i >= t that
  // see key t of dk_t += scale ds_it q_i and dv_t += p_it dout_i, with p recomputed from lse.
  pool.ParallelFor(n * n_kv, 1, [&](int64_t t0, int64_t t1, int) {
    for (int64_t task = t0; task < t1; ++task) {
      const int64_t t = Balanced(task / n_kv, n);
      const int kvh = static_cast<int>(task % n_kv);
      const int64_t koff = int64_t{kvh} * hd;
      const float* kt = k.Row(t) + koff;
      const float* vt = v.Row(t) + koff;
      float* dkt = dk.Row(t) + koff;
      float* dvt = dv.Row(t) + koff;
      std::fill(dkt, dkt + hd, 0.0f);
      std::fill(dvt, dvt + hd, 0.0f);
      for (int h = kvh * group; h < (kvh + 1) * group; ++h) {
        for (int64_t i = t; i < n; ++i) {
          const float* qh = q.Row(i) + int64_t{h} * hd;
          const float* doh = dout.Row(i) + int64_t{h} * hd;
          const float p = std::exp(Dot(kt, qh, hd) * scale - lse[i * n_heads + h]);
          const float ds = p * (Dot(vt, doh, hd) - dsum[i * n_heads + h]);
          Axpy(scale * ds, qh, dkt, hd);
          Axpy(p, doh, dvt, hd);
        }
      }
    }
  });
}

}  // namespace cqkv
