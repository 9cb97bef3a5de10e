#include "model/backward_ops.h"

#include <cblas.h>

#include <algorithm>
#include <cassert>
#include <cmath>
#include <mutex>
#include <vector>

#include "kernels/dequant.h"
#include "kernels/ops.h"
#include "util/error.h"

namespace cqkv {
namespace {

// Columns of W per task: at most 512 (with 256-row blocks, 512 KiB of widened scratch per
// thread) and small enough to give every thread about four tasks.
constexpr int64_t kMaxColBlock = 512;
constexpr int64_t kRowBlock = 256;

void EnsureSingleThreadedBlas() {
  // Threads split W's columns themselves; OpenBLAS threads on top would oversubscribe -t N.
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(1); });
}

// Maps task t in [0, n) so that any contiguous range of tasks mixes cheap and expensive rows
// of a causal triangle (0, n-1, 1, n-2, ...): ThreadPool hands each thread one contiguous chunk,
// and in plain order the thread with the last rows would do three quarters of the work.
inline int64_t Balanced(int64_t t, int64_t n) { return (t % 2 == 0) ? t / 2 : n - 1 - t / 2; }

}  // namespace

void MatMulTransposed(ConstMat x, const WeightMatrix& w, Mat y, ThreadPool& pool, bool accumulate) {
  CQKV_CHECK(x.cols == w.rows && y.cols == w.cols && x.rows == y.rows,
             "transposed matmul shape mismatch for tensor '{}': x ({}x{}), W ({}x{}), y ({}x{})",
             w.name, x.rows, x.cols, w.rows, w.cols, y.rows, y.cols);
  const int64_t n = x.rows;
  if (n == 0 || w.cols == 0) return;
  EnsureSingleThreadedBlas();
  // Column chunks start on a quantisation block so a chunk of a row can be widened on its own.
  const int64_t align = std::max<int64_t>(DTypeBlockSize(w.type), 16);
  int64_t nc = (w.cols + 4 * pool.size() - 1) / (4 * pool.size());
  nc = std::min(kMaxColBlock, (nc + align - 1) / align * align);
  const int64_t n_chunks = (w.cols + nc - 1) / nc;
  pool.ParallelFor(n_chunks, 1, [&](int64_t ch0, int64_t ch1, int) {
    std::vector<float> scratch;
    for (int64_t ch = ch0; ch < ch1; ++ch) {
      const int64_t c0 = ch * nc;
      const int64_t ncols = std::min(nc, w.cols - c0);
      if (w.type == DType::kF32) {
        // y[:, c0:c0+ncols] = x (n x rows) * W[:, c0:c0+ncols] (rows x ncols)
        const float* wf = static_cast<const float*>(w.data) + c0;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(n),
                    static_cast<int>(ncols), static_cast<int>(w.rows), 1.0f, x.data,
                    static_cast<int>(x.stride), wf, static_cast<int>(w.cols),
                    accumulate ? 1.0f : 0.0f, y.data + c0, static_cast<int>(y.stride));
        continue;
      }
      const int64_t col_bytes = DTypeRowBytes(w.type, c0);
      for (int64_t r0 = 0; r0 < w.rows; r0 += kRowBlock) {
        const int64_t nr = std::min(kRowBlock, w.rows - r0);
        scratch.resize(static_cast<size_t>(nr * ncols));  // (nr, ncols) widened block of W
        for (int64_t r = 0; r < nr; ++r) {
          DequantizeRow(w.type, w.RowPtr(r0 + r) + col_bytes, ncols, scratch.data() + r * ncols);
        }
        const float beta = (r0 == 0 && !accumulate) ? 0.0f : 1.0f;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(n),
                    static_cast<int>(ncols), static_cast<int>(nr), 1.0f, x.data + r0,
                    static_cast<int>(x.stride), scratch.data(), static_cast<int>(ncols), beta,
                    y.data + c0, static_cast<int>(y.stride));
      }
    }
  });
}

void MatMulTransposedRef(ConstMat x, const WeightMatrix& w, Mat y) {
  CQKV_CHECK(x.cols == w.rows && y.cols == w.cols && x.rows == y.rows,
             "transposed matmul shape mismatch for tensor '{}'", w.name);
  std::vector<float> wf(static_cast<size_t>(w.rows * w.cols));  // (rows, cols)
  for (int64_t r = 0; r < w.rows; ++r) {
    DequantizeRowRef(w.type, w.RowPtr(r), w.cols, wf.data() + r * w.cols);
  }
  for (int64_t i = 0; i < x.rows; ++i) {
    for (int64_t c = 0; c < w.cols; ++c) {
      double s = 0;
      for (int64_t r = 0; r < w.rows; ++r) s += static_cast<double>(x(i, r)) * wf[r * w.cols + c];
      y(i, c) = static_cast<float>(s);
    }
  }
}

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
