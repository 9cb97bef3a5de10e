#include "model/backward.h"

#include <algorithm>
#include <cmath>

#include "kernels/dequant.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "kernels/rope.h"
#include "kv/attention.h"
#include "model/attention_backward.h"
#include "model/kv_shape.h"
#include "model/projection.h"
#include "model/rms_norm.h"
#include "util/error.h"

namespace cqkv {
namespace {

// Logits are formed this many floats at a time (64 MiB), so a 32k vocabulary over thousands of
// tokens never needs an (n, vocab) matrix.
constexpr int64_t kLogitChunkFloats = int64_t{16} << 20;

// Causal attention over the window's own K/V arrays, through the kernel the fp32 cache uses, so
// the forward here computes what LlamaForward computes.
struct DenseRows {
  const float* k;  // (n, kv_dim)
  const float* v;  // (n, kv_dim)
  int64_t kv_dim;
  int hd;
  float Score(int64_t t, int kvh, const float* qh) const {
    return Dot(k + t * kv_dim + int64_t{kvh} * hd, qh, hd);
  }
  void AddValue(int64_t t, int kvh, float p, float* o) const {
    Axpy(p, v + t * kv_dim + int64_t{kvh} * hd, o, hd);
  }
};

void AddInPlace(Mat y, ConstMat x) {
  for (int64_t i = 0; i < y.rows; ++i) {
    float* yi = y.Row(i);
    const float* xi = x.Row(i);
    for (int64_t c = 0; c < y.cols; ++c) yi[c] += xi[c];
  }
}

// Rotates each of the `heads` heads of row i to position i (or back when `inverse`).
void RotateRows(const RopeTable& rope, Mat m, int heads, int hd, bool inverse) {
  for (int64_t i = 0; i < m.rows; ++i) {
    for (int h = 0; h < heads; ++h) rope.Rotate(m.Row(i) + int64_t{h} * hd, i, inverse);
  }
}

// Loss over rows 0..n-2 of the final residual x (n, dim) and its gradient dx (rows 0..n-2
// written, row n-1 zeroed): logits = RmsNormRows(x) W_out^T, dlogits = softmax - onehot(target).
double OutputLossBackward(const Model& model, ConstMat x, std::span<const int32_t> tokens,
                          ThreadPool& pool, Mat dx) {
  const ModelConfig& c = model.config;
  const ModelWeights& w = model.weights;
  const int64_t n_pred = x.rows - 1, V = c.vocab_size, dim = c.dim;
  const int64_t chunk = std::clamp<int64_t>(kLogitChunkFloats / V, 1, n_pred);
  std::vector<float> xn(static_cast<size_t>(chunk * dim)), dxn(xn.size());  // (chunk, dim)
  std::vector<float> logits(static_cast<size_t>(chunk * V));                // (chunk, V)
  std::vector<double> row_loss(static_cast<size_t>(n_pred));
  for (int64_t p0 = 0; p0 < n_pred; p0 += chunk) {
    const int64_t m = std::min(chunk, n_pred - p0);
    ConstMat xr = x.RowRange(p0, m);
    Mat xn_m(xn.data(), m, dim), dxn_m(dxn.data(), m, dim), lg(logits.data(), m, V);
    RmsNormRows(xr, w.output_norm, c.rms_eps, xn_m);
    MatMul(xn_m, w.output, lg, pool);
    // Log-softmax in double as the perplexity evaluation does, so the two losses agree.
    pool.ParallelFor(m, 8, [&](int64_t r0, int64_t r1, int) {
      for (int64_t r = r0; r < r1; ++r) {
        float* row = lg.Row(r);
        double mx = -INFINITY;
        for (int64_t j = 0; j < V; ++j) mx = std::max(mx, static_cast<double>(row[j]));
        const int32_t target = tokens[p0 + r + 1];
        const float target_logit = row[target];
        double sum = 0;
        for (int64_t j = 0; j < V; ++j) {
          const double e = std::exp(row[j] - mx);
          sum += e;
          row[j] = static_cast<float>(e);
        }
        row_loss[p0 + r] = mx + std::log(sum) - target_logit;
        const float inv = static_cast<float>(1.0 / sum);
        for (int64_t j = 0; j < V; ++j) row[j] *= inv;  // softmax
        row[target] -= 1.0f;
      }
    });
    MatMulTransposed(lg, w.output, dxn_m, pool);
    RmsNormRowsBackward(xr, w.output_norm, c.rms_eps, dxn_m, dx.RowRange(p0, m), false);
  }
  std::fill(dx.Row(n_pred), dx.Row(n_pred) + dim, 0.0f);
  double loss = 0;
  for (double l : row_loss) loss += l;
  return loss;
}

}  // namespace

double ForwardBackwardKvStream(const Model& model, std::span<const int32_t> tokens,
                               ThreadPool& pool, bool with_gradients, const KvLayerSink& sink,
                               CheckpointStore* checkpoints) {
  const ModelConfig& c = model.config;
  const ModelWeights& w = model.weights;
  const int64_t n = static_cast<int64_t>(tokens.size());
  CQKV_CHECK(n >= 2, "K/V gradients need a window of at least 2 tokens, got {}", n);
  CQKV_CHECK(n <= c.max_seq_len, "window of {} tokens exceeds the context of model {} ({})", n,
             model.path, c.max_seq_len);
  const int L = c.n_layers, hd = c.head_dim();
  const int64_t dim = c.dim, kv_dim = c.kv_dim(), q_dim = c.q_dim();
  const int64_t hidden = c.hidden_dim;
  const auto rows = [n](int64_t width) {
    return std::vector<float>(static_cast<size_t>(n * width));
  };
  const KvShape shape = KvShapeFor(c, static_cast<int>(n));
  const RopeTable rope(hd, n, c.rope);

  // Scratch, each (n, width) row-major. att holds the attention output in the forward pass and
  // d loss / d attention output in the backward one. k_pre, k, v hold the current layer only.
  std::vector<float> x_buf = rows(dim), xn_buf = rows(dim), proj_buf = rows(dim);
  std::vector<float> q_buf = rows(q_dim), att_buf = rows(q_dim);
  std::vector<float> gate_buf = rows(hidden), up_buf = rows(hidden);
  std::vector<float> k_pre_buf = rows(kv_dim), k_buf = rows(kv_dim), v_buf = rows(kv_dim);
  Mat x(x_buf.data(), n, dim), xn(xn_buf.data(), n, dim), proj(proj_buf.data(), n, dim);
  Mat q(q_buf.data(), n, q_dim), att(att_buf.data(), n, q_dim);
  Mat gate(gate_buf.data(), n, hidden), up(up_buf.data(), n, hidden);
  Mat k_pre(k_pre_buf.data(), n, kv_dim), k(k_buf.data(), n, kv_dim), v(v_buf.data(), n, kv_dim);
  // Layer checkpoints for the backward sweep: the residual stream entering each layer and
  // entering its MLP block, (n, dim) each.
  std::vector<std::vector<float>> x_in(with_gradients ? L : 0), x_mid(with_gradients ? L : 0);
  const auto save = [&](std::vector<float>& slot, int index) {
    if (checkpoints) {
      checkpoints->Put(index, x_buf);
    } else {
      slot = x_buf;
    }
  };

  for (int64_t i = 0; i < n; ++i) {
    CQKV_CHECK(tokens[i] >= 0 && tokens[i] < c.vocab_size,
               "token id {} at position {} is outside the vocabulary (size {})", tokens[i], i,
               c.vocab_size);
    DequantizeRow(w.tok_embd.type, w.tok_embd.RowPtr(tokens[i]), dim, x.Row(i));
  }

  // Forward, step for step as LlamaForward with an fp32 cache (same kernels, same order).
  for (int l = 0; l < L; ++l) {
    const LayerWeights& lw = w.layers[l];
    if (with_gradients) save(x_in[l], 2 * l);
    RmsNormRows(x, lw.attn_norm, c.rms_eps, xn);
    ProjectHeads(xn, lw.wq, lw.bq, lw.q_norm, hd, c.rms_eps, q, Mat(), pool);
    ProjectHeads(xn, lw.wk, lw.bk, lw.k_norm, hd, c.rms_eps, k_pre, Mat(), pool);
    ProjectHeads(xn, lw.wv, lw.bv, nullptr, hd, c.rms_eps, v, Mat(), pool);
    std::copy(k_pre_buf.begin(), k_pre_buf.end(), k_buf.begin());
    RotateRows(rope, q, c.n_heads, hd, false);
    RotateRows(rope, k, c.n_kv_heads, hd, false);
    if (!with_gradients) sink(KvLayerSlice{l, k_pre, k, v, {}, {}, {}});
    CausalAttention(shape, DenseRows{k.data, v.data, kv_dim, hd}, q, 0, att, pool);
    MatMul(att, lw.wo, proj, pool);
    AddInPlace(x, proj);
    if (with_gradients) save(x_mid[l], 2 * l + 1);
    RmsNormRows(x, lw.ffn_norm, c.rms_eps, xn);
    MatMul(xn, lw.w_gate, gate, pool);
    MatMul(xn, lw.w_up, up, pool);
    for (size_t e = 0; e < gate_buf.size(); ++e) {
      const float g = gate_buf[e];
      gate_buf[e] = g / (1.0f + std::exp(-g)) * up_buf[e];  // SiLU(gate) * up
    }
    MatMul(gate, lw.w_down, proj, pool);
    AddInPlace(x, proj);
  }
  if (!with_gradients) return 0;

  // dx: d loss / d residual stream at the current point of the backward sweep.
  std::vector<float> dx_buf = rows(dim), dq_buf = rows(q_dim), dh_buf = rows(hidden);
  std::vector<float> dk_buf = rows(kv_dim), dv_buf = rows(kv_dim), dk_pre_buf = rows(kv_dim);
  Mat dx(dx_buf.data(), n, dim), dq(dq_buf.data(), n, q_dim), dh(dh_buf.data(), n, hidden);
  Mat dk(dk_buf.data(), n, kv_dim), dv(dv_buf.data(), n, kv_dim);
  Mat dk_pre(dk_pre_buf.data(), n, kv_dim);
  Mat& db = xn;  // d loss / d normed input of the current block (recomputed xn is dead)
  // Q/K before their per-head norm and d loss / d K there, (n, q_dim) / (n, kv_dim): only
  // models with Q/K norms need them (the norm's backward reads its input).
  std::vector<float> q_raw_buf = rows(c.qk_norm ? q_dim : 0);
  std::vector<float> k_raw_buf = rows(c.qk_norm ? kv_dim : 0), dk_raw_buf = k_raw_buf;
  Mat q_raw(q_raw_buf.data(), c.qk_norm ? n : 0, q_dim);
  Mat k_raw(k_raw_buf.data(), c.qk_norm ? n : 0, kv_dim);
  Mat dk_raw(dk_raw_buf.data(), c.qk_norm ? n : 0, kv_dim);
  Mat& dout = att;  // d loss / d attention output
  const double loss = OutputLossBackward(model, x, tokens, pool, dx);

  for (int l = L - 1; l >= 0; --l) {
    const LayerWeights& lw = w.layers[l];
    if (checkpoints) {
      x_in[l] = checkpoints->Take(2 * l);
      x_mid[l] = checkpoints->Take(2 * l + 1);
      CQKV_CHECK(static_cast<int64_t>(x_in[l].size()) == n * dim &&
                     static_cast<int64_t>(x_mid[l].size()) == n * dim,
                 "layer {} checkpoints came back with {} and {} values, expected {}", l,
                 x_in[l].size(), x_mid[l].size(), n * dim);
    }
    ConstMat xi(x_in[l].data(), n, dim), xm(x_mid[l].data(), n, dim);
    // MLP: x_out = x_mid + W_down (SiLU(W_gate b) * W_up b), b = RmsNormRows(x_mid).
    RmsNormRows(xm, lw.ffn_norm, c.rms_eps, xn);
    MatMul(xn, lw.w_gate, gate, pool);
    MatMul(xn, lw.w_up, up, pool);
    MatMulTransposed(dx, lw.w_down, dh, pool);
    for (size_t e = 0; e < gate_buf.size(); ++e) {
      const float g = gate_buf[e], sg = 1.0f / (1.0f + std::exp(-g));
      gate_buf[e] = dh_buf[e] * up_buf[e] * sg * (1.0f + g * (1.0f - sg));  // d gate
      up_buf[e] = dh_buf[e] * g * sg;                                       // d up
    }
    MatMulTransposed(gate, lw.w_gate, db, pool);
    MatMulTransposed(up, lw.w_up, db, pool, /*accumulate=*/true);
    RmsNormRowsBackward(xm, lw.ffn_norm, c.rms_eps, db, dx, /*accumulate=*/true);

    // Attention: x_mid = x_in + W_o attn(R q_pre, R k_pre, v), q_pre = N_q(W_q a + b_q),
    // k_pre = N_k(W_k a + b_k), v = W_v a + b_v, a = RmsNormRows(x_in), N a per-head norm or
    // nothing. Q, K and V are recomputed from the checkpoint, exactly as the forward made them.
    MatMulTransposed(dx, lw.wo, dout, pool);
    RmsNormRows(xi, lw.attn_norm, c.rms_eps, xn);
    ProjectHeads(xn, lw.wq, lw.bq, lw.q_norm, hd, c.rms_eps, q, q_raw, pool);
    ProjectHeads(xn, lw.wk, lw.bk, lw.k_norm, hd, c.rms_eps, k_pre, k_raw, pool);
    ProjectHeads(xn, lw.wv, lw.bv, nullptr, hd, c.rms_eps, v, Mat(), pool);
    std::copy(k_pre_buf.begin(), k_pre_buf.end(), k_buf.begin());
    RotateRows(rope, q, c.n_heads, hd, false);
    RotateRows(rope, k, c.n_kv_heads, hd, false);
    AttentionBackward(shape, q, k, v, dout, dq, dk, dv, pool);
    // The inverse rotation is the transpose: d k_pre = R^T d k.
    std::copy(dk_buf.begin(), dk_buf.end(), dk_pre_buf.begin());
    RotateRows(rope, dk_pre, c.n_kv_heads, hd, true);
    sink(KvLayerSlice{l, k_pre, k, v, dk_pre, dk, dv});
    if (l > 0) {  // below layer 0 only the embeddings remain, which get no gradient
      RotateRows(rope, dq, c.n_heads, hd, true);
      ProjectHeadsBackward(lw.wq, lw.q_norm, hd, c.rms_eps, q_raw, dq, db, false, pool);
      if (c.qk_norm) {
        // d k_pre is copied since the norm's backward overwrites its gradient argument.
        std::copy(dk_pre_buf.begin(), dk_pre_buf.end(), dk_raw_buf.begin());
        ProjectHeadsBackward(lw.wk, lw.k_norm, hd, c.rms_eps, k_raw, dk_raw, db, true, pool);
      } else {
        ProjectHeadsBackward(lw.wk, nullptr, hd, c.rms_eps, k_raw, dk_pre, db, true, pool);
      }
      ProjectHeadsBackward(lw.wv, nullptr, hd, c.rms_eps, k_raw, dv, db, true, pool);
      RmsNormRowsBackward(xi, lw.attn_norm, c.rms_eps, db, dx, /*accumulate=*/true);
    }
    // The checkpoints of this layer are no longer needed.
    std::vector<float>().swap(x_in[l]);
    std::vector<float>().swap(x_mid[l]);
  }
  return loss;
}

void ForwardBackwardKv(const Model& model, std::span<const int32_t> tokens, ThreadPool& pool,
                       KvActivations* acts, KvGradients* grads) {
  const int L = model.config.n_layers;
  const int64_t n = static_cast<int64_t>(tokens.size());
  const auto copy = [](ConstMat m) { return std::vector<float>(m.data, m.data + m.rows * m.cols); };
  if (acts) {
    acts->n_tokens = n;
    acts->n_layers = L;
    acts->kv_dim = model.config.kv_dim();
    acts->k_pre.assign(L, {});
    acts->k.assign(L, {});
    acts->v.assign(L, {});
  }
  if (grads) {
    grads->dk_pre.assign(L, {});
    grads->dk.assign(L, {});
    grads->dv.assign(L, {});
    grads->n_predicted = n - 1;
  }
  const double loss =
      ForwardBackwardKvStream(model, tokens, pool, grads != nullptr, [&](const KvLayerSlice& s) {
        if (acts) {
          acts->k_pre[s.layer] = copy(s.k_pre);
          acts->k[s.layer] = copy(s.k);
          acts->v[s.layer] = copy(s.v);
        }
        if (grads) {
          grads->dk_pre[s.layer] = copy(s.dk_pre);
          grads->dk[s.layer] = copy(s.dk);
          grads->dv[s.layer] = copy(s.dv);
        }
      });
  if (grads) grads->loss = loss;
}

}  // namespace cqkv
