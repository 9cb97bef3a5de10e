#include "model/llama.h"
#include "model/kv_shape.h"

#include <algorithm>
#include <cmath>

#include "kernels/dequant.h"
#include "kernels/matmul.h"
#include "kernels/rope.h"
#include "model/fingerprint.h"
#include "model/projection.h"
#include "model/rms_norm.h"
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

// Decode items share one DecodeAttention call; a cache without AttendPartial cannot join it.
bool IsDecode(const BatchItem& item) {
  return item.tokens.size() == 1 && item.cache->HasAttendPartial();
}

// Everything that can fail is checked before any cache changes, so a bad item leaves the whole
// batch untouched.
void CheckBatch(std::span<const BatchItem> items, const ModelConfig& c) {
  for (size_t i = 0; i < items.size(); ++i) {
    const BatchItem& it = items[i];
    CQKV_CHECK(it.cache != nullptr, "ForwardBatch: item {} has no cache", i);
    const int64_t n = static_cast<int64_t>(it.tokens.size());
    CQKV_CHECK(n >= 1, "ForwardBatch: item {} has no tokens", i);
    CQKV_CHECK(it.logits.cols == c.vocab_size &&
                   (it.logits.rows == n || it.logits.rows == 1 || it.logits.rows == 0),
               "ForwardBatch: item {} has logits {}x{}, expected ({}, 1 or 0) x {}", i,
               it.logits.rows, it.logits.cols, n, c.vocab_size);
    const KvShape& s = it.cache->shape();
    CQKV_CHECK(s.n_layers == c.n_layers && s.n_heads == c.n_heads && s.n_kv_heads == c.n_kv_heads &&
                   s.head_dim == c.head_dim() && s.rope == c.rope,
               "ForwardBatch: item {} has a {} cache shaped for another model", i,
               it.cache->format());
    const int64_t pos0 = it.cache->tokens(0);
    CQKV_CHECK(pos0 + n <= s.max_tokens,
               "kv cache: context of {} tokens exceeds the cache capacity of {}", pos0 + n,
               s.max_tokens);
    for (int64_t j = 0; j < n; ++j) {
      CQKV_CHECK(it.tokens[j] >= 0 && it.tokens[j] < c.vocab_size,
                 "token id {} at position {} is outside the vocabulary (size {})", it.tokens[j],
                 pos0 + j, c.vocab_size);
    }
    for (size_t j = 0; j < i; ++j) {
      CQKV_CHECK(items[j].cache != it.cache, "ForwardBatch: items {} and {} share one cache", j, i);
    }
  }
}

}  // namespace

LlamaForward::LlamaForward(const Model& model, ThreadPool& pool) : model_(model), pool_(pool) {}

void LlamaForward::Resize(int64_t n) {
  const ModelConfig& c = model_.config;
  const auto sz = [](int64_t rows, int64_t w) { return static_cast<size_t>(rows * w); };
  x_.resize(sz(n, c.dim));
  xn_.resize(sz(n, c.dim));
  q_.resize(sz(n, c.q_dim()));
  k_.resize(sz(n, c.kv_dim()));
  k_pre_.resize(sz(n, c.kv_dim()));
  v_.resize(sz(n, c.kv_dim()));
  att_.resize(sz(n, c.q_dim()));
  proj_.resize(sz(n, c.dim));
  gate_.resize(sz(n, c.hidden_dim));
  up_.resize(sz(n, c.hidden_dim));
}

void LlamaForward::Forward(std::span<const int32_t> tokens, KvCache& cache, Mat logits) {
  if (tokens.empty()) return;
  const BatchItem item{&cache, tokens, logits};
  ForwardBatch(std::span(&item, 1));
}

void LlamaForward::ForwardBatch(std::span<const BatchItem> items) {
  const ModelConfig& c = model_.config;
  const ModelWeights& w = model_.weights;
  CheckBatch(items, c);
  if (items.empty()) return;
  const size_t B = items.size();
  // Decode items take the first rows, so their queries and outputs are already one contiguous
  // (B_dec, q_dim) block for DecodeAttention: no gather or scatter.
  row0_.resize(B);
  pos0_.resize(B);
  int64_t n = 0, n_dec = 0, n_out = 0;
  for (const bool decode : {true, false}) {
    for (size_t i = 0; i < B; ++i) {
      if (IsDecode(items[i]) != decode) continue;
      row0_[i] = n;
      n += static_cast<int64_t>(items[i].tokens.size());
    }
    if (decode) n_dec = n;
  }
  for (size_t i = 0; i < B; ++i) {
    pos0_[i] = items[i].cache->tokens(0);  // before this step's Appends move it
    n_out += items[i].logits.rows;
  }
  Resize(n);
  const int64_t q_dim = c.q_dim();
  const int64_t kv_dim = c.kv_dim();
  // Views of the whole step, n rows each: x, xn, proj (n, dim); q, att (n, q_dim);
  // k, k_pre, v (n, kv_dim); gate, up (n, hidden_dim).
  Mat x(x_.data(), n, c.dim), xn(xn_.data(), n, c.dim), proj(proj_.data(), n, c.dim);
  Mat q(q_.data(), n, q_dim), att(att_.data(), n, q_dim);
  Mat k(k_.data(), n, kv_dim), k_pre(k_pre_.data(), n, kv_dim), v(v_.data(), n, kv_dim);
  Mat gate(gate_.data(), n, c.hidden_dim), up(up_.data(), n, c.hidden_dim);

  for (size_t i = 0; i < B; ++i) {
    for (size_t j = 0; j < items[i].tokens.size(); ++j) {
      const int32_t t = items[i].tokens[j];
      DequantizeRow(w.tok_embd.type, w.tok_embd.RowPtr(t), c.dim, x.Row(row0_[i] + j));
    }
  }

  for (int l = 0; l < c.n_layers; ++l) {
    const LayerWeights& lw = w.layers[l];
    RmsNormRows(x, lw.attn_norm, c.rms_eps, xn);
    // Biases and Q/K norms (qwen2, qwen3) come before RoPE and thus before the cache: k_pre
    // is the key after them, as llama.cpp caches it.
    const int hd = c.head_dim();
    ProjectHeads(xn, lw.wq, lw.bq, lw.q_norm, hd, c.rms_eps, q, Mat(), pool_);
    ProjectHeads(xn, lw.wk, lw.bk, lw.k_norm, hd, c.rms_eps, k, Mat(), pool_);
    ProjectHeads(xn, lw.wv, lw.bv, nullptr, hd, c.rms_eps, v, Mat(), pool_);
    // RoPE rotates k in place; formats that store pre-RoPE keys need them as they were.
    std::copy(k_.begin(), k_.begin() + n * kv_dim, k_pre_.begin());
    decode_.clear();
    for (size_t i = 0; i < B; ++i) {
      const int64_t r0 = row0_[i], len = static_cast<int64_t>(items[i].tokens.size());
      for (int64_t j = 0; j < len; ++j) {
        const int64_t pos = pos0_[i] + j;
        ApplyRope(q.Row(r0 + j), c.n_heads, hd, pos, c.rope);
        ApplyRope(k.Row(r0 + j), c.n_kv_heads, hd, pos, c.rope);
      }
      KvCache& cache = *items[i].cache;
      if (IsDecode(items[i])) {
        cache.Append(
            l, KvBlock{pos0_[i], k_pre.RowRange(r0, 1), k.RowRange(r0, 1), v.RowRange(r0, 1)});
        decode_.push_back(DecodeSeq{&cache, cache.tokens(l)});
        continue;
      }
      // Pieces of at most ExactPrefillRows, so a prompt scores as decoding it would.
      for (int64_t j = 0; j < len;) {
        const int64_t m = std::min(len - j, std::max<int64_t>(1, cache.ExactPrefillRows(l)));
        // k_pre, k, v: (m, kv_dim); q, att: (m, q_dim) row ranges of this piece.
        const int64_t r = r0 + j;
        cache.Append(
            l, KvBlock{pos0_[i] + j, k_pre.RowRange(r, m), k.RowRange(r, m), v.RowRange(r, m)});
        cache.Attend(l, q.RowRange(r, m), pos0_[i] + j, att.RowRange(r, m), pool_);
        j += m;
      }
    }
    // Decode rows in item order are rows [0, n_dec), matching decode_'s order.
    DecodeAttention(decode_, l, q.RowRange(0, n_dec), att.RowRange(0, n_dec), pool_);
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

  if (n_out == 0) return;
  // The final norm is per row, so normalising straight into xn's first n_out rows gathers the
  // rows that want logits: the output weight, the largest matrix, is then read once.
  int64_t o = 0;
  for (size_t i = 0; i < B; ++i) {
    const int64_t rows = items[i].logits.rows;
    const int64_t src = row0_[i] + static_cast<int64_t>(items[i].tokens.size()) - rows;
    RmsNormRows(x.RowRange(src, rows), w.output_norm, c.rms_eps, xn.RowRange(o, rows));
    o += rows;
  }
  // When the items' logits rows follow each other in one matrix (Forward's single item, or a
  // scheduler's step buffer) they are written in place; otherwise through logits_ and copied.
  const BatchItem* first = nullptr;
  bool contiguous = true;
  o = 0;
  for (const BatchItem& it : items) {
    if (it.logits.rows == 0) continue;
    if (first == nullptr) first = &it;
    contiguous = contiguous && it.logits.stride == first->logits.stride &&
                 it.logits.data == first->logits.data + o * first->logits.stride;
    o += it.logits.rows;
  }
  if (contiguous) {
    Mat out(first->logits.data, n_out, c.vocab_size, first->logits.stride);  // (n_out, vocab)
    MatMul(xn.RowRange(0, n_out), w.output, out, pool_);
    return;
  }
  logits_.resize(static_cast<size_t>(n_out * c.vocab_size));
  Mat logits(logits_.data(), n_out, c.vocab_size);  // (n_out, vocab)
  MatMul(xn.RowRange(0, n_out), w.output, logits, pool_);
  o = 0;
  for (const BatchItem& it : items) {
    for (int64_t r = 0; r < it.logits.rows; ++r, ++o) {
      std::copy(logits.Row(o), logits.Row(o) + c.vocab_size, it.logits.Row(r));
    }
  }
}

std::unique_ptr<KvCache> MakeCacheFor(const Model& model, const std::string& spec, int max_tokens) {
  KvShape shape = KvShapeFor(model.config, max_tokens);
  shape.model_fingerprint = ModelFingerprint(model);
  return MakeKvCache(spec, shape);
}

}  // namespace cqkv
