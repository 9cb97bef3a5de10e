#include "model/llama.h"

#include <cmath>

#include "kernels/dequant.h"
#include "kernels/matmul.h"
#include "model/fingerprint.h"
#include "model/rms_norm.h"
#include "model/rope.h"
#include "util/error.h"

namespace cqkv {
namespace {

void AddInPlace(Mat y, ConstMat x) {
  for (int64_t i = 0; i < y.rows; ++i) {
    float* yi = y.Row(i);
    const float* xi = x.Row(i);
    for (int64_t c = 0; c < y.cols; ++c) yi[c] += xi[c];
  }
}

}  // namespace

LlamaForward::LlamaForward(const Model& model, ThreadPool& pool) : model_(model), pool_(pool) {}

void LlamaForward::Resize(int64_t n) {
  const ModelConfig& c = model_.config;
  const auto sz = [n](int64_t w) { return static_cast<size_t>(n * w); };
  x_.resize(sz(c.dim));
  xn_.resize(sz(c.dim));
  q_.resize(sz(int64_t{c.n_heads} * c.head_dim()));
  k_.resize(sz(c.kv_dim()));
  k_pre_.resize(sz(c.kv_dim()));
  v_.resize(sz(c.kv_dim()));
  att_.resize(sz(int64_t{c.n_heads} * c.head_dim()));
  proj_.resize(sz(c.dim));
  gate_.resize(sz(c.hidden_dim));
  up_.resize(sz(c.hidden_dim));
}

void LlamaForward::Forward(std::span<const int32_t> tokens, KvCache& cache, Mat logits) {
  const ModelConfig& c = model_.config;
  const ModelWeights& w = model_.weights;
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n == 0) return;
  CQKV_CHECK(logits.cols == c.vocab_size && (logits.rows == n || logits.rows == 1),
             "Forward: logits must be ({} or 1) x {}", n, c.vocab_size);
  const int64_t pos0 = cache.tokens(0);
  Resize(n);
  const int64_t q_dim = int64_t{c.n_heads} * c.head_dim();
  const int64_t kv_dim = c.kv_dim();
  Mat x(x_.data(), n, c.dim), xn(xn_.data(), n, c.dim), proj(proj_.data(), n, c.dim);
  Mat q(q_.data(), n, q_dim), att(att_.data(), n, q_dim);
  Mat k(k_.data(), n, kv_dim), k_pre(k_pre_.data(), n, kv_dim), v(v_.data(), n, kv_dim);
  Mat gate(gate_.data(), n, c.hidden_dim), up(up_.data(), n, c.hidden_dim);

  for (int64_t i = 0; i < n; ++i) {
    CQKV_CHECK(tokens[i] >= 0 && tokens[i] < c.vocab_size,
               "token id {} at position {} is outside the vocabulary (size {})", tokens[i],
               pos0 + i, c.vocab_size);
    DequantizeRow(w.tok_embd.type, w.tok_embd.RowPtr(tokens[i]), c.dim, x.Row(i));
  }

  for (int l = 0; l < c.n_layers; ++l) {
    const LayerWeights& lw = w.layers[l];
    RmsNormRows(x, lw.attn_norm, c.rms_eps, xn);
    MatMul(xn, lw.wq, q, pool_);
    MatMul(xn, lw.wk, k, pool_);
    MatMul(xn, lw.wv, v, pool_);
    std::copy(k_.begin(), k_.begin() + n * kv_dim, k_pre_.begin());
    for (int64_t i = 0; i < n; ++i) {
      ApplyRope(q.Row(i), c.n_heads, c.head_dim(), pos0 + i, c.rope_freq_base, c.rope_type);
      ApplyRope(k.Row(i), c.n_kv_heads, c.head_dim(), pos0 + i, c.rope_freq_base, c.rope_type);
    }
    cache.Append(l, KvBlock{pos0, k_pre, k, v});
    cache.Attend(l, q, pos0, att, pool_);
    MatMul(att, lw.wo, proj, pool_);
    AddInPlace(x, proj);

    RmsNormRows(x, lw.ffn_norm, c.rms_eps, xn);
    MatMul(xn, lw.w_gate, gate, pool_);
    MatMul(xn, lw.w_up, up, pool_);
    for (int64_t i = 0; i < n * c.hidden_dim; ++i) {
      const float g = gate_[i];
      gate_[i] = g / (1.0f + std::exp(-g)) * up_[i];  // SiLU(gate) * up
    }
    MatMul(gate, lw.w_down, proj, pool_);
    AddInPlace(x, proj);
  }

  const int64_t first = logits.rows == 1 ? n - 1 : 0;
  Mat x_out = x.RowRange(first, n - first), xn_out = xn.RowRange(first, n - first);
  RmsNormRows(x_out, w.output_norm, c.rms_eps, xn_out);
  MatMul(xn_out, w.output, logits, pool_);
}

std::unique_ptr<KvCache> MakeCacheFor(const Model& model, const std::string& spec, int max_tokens) {
  KvShape shape = KvShape::FromConfig(model.config, max_tokens);
  shape.model_fingerprint = ModelFingerprint(model);
  return MakeKvCache(spec, shape);
}

}  // namespace cqkv
