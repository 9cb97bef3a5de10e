// An in-memory LLaMA model with random F32 weights for unit tests that need a Model without a
// file (forward-pass invariants, perplexity closed forms).
#pragma once

#include <memory>
#include <random>
#include <vector>

#include "model/model.h"

namespace cqkv::testing {

inline std::unique_ptr<Model> MakeRandomModel(const ModelConfig& c, uint32_t seed,
                                              float scale = 0.1f) {
  auto model = std::make_unique<Model>();
  model->path = "<random>";
  model->file_format = "memory";
  model->config = c;
  auto store = std::make_shared<std::vector<std::vector<float>>>();
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, scale);
  auto alloc = [&](int64_t n, float mean, float sd) {
    auto& v = store->emplace_back(static_cast<size_t>(n));
    for (auto& x : v) x = mean + sd / scale * nd(rng);
    return v.data();
  };
  auto mat = [&](int64_t rows, int64_t cols) {
    WeightMatrix w;
    w.rows = rows;
    w.cols = cols;
    w.data = alloc(rows * cols, 0.0f, scale);
    w.name = "random";
    return w;
  };
  store->reserve(static_cast<size_t>(4 + 9 * c.n_layers));  // keep data pointers stable
  const int64_t q_dim = int64_t{c.n_heads} * c.head_dim();
  ModelWeights& w = model->weights;
  w.tok_embd = mat(c.vocab_size, c.dim);
  for (int l = 0; l < c.n_layers; ++l) {
    LayerWeights lw;
    lw.attn_norm = alloc(c.dim, 1.0f, 0.1f);
    lw.wq = mat(q_dim, c.dim);
    lw.wk = mat(c.kv_dim(), c.dim);
    lw.wv = mat(c.kv_dim(), c.dim);
    lw.wo = mat(c.dim, q_dim);
    lw.ffn_norm = alloc(c.dim, 1.0f, 0.1f);
    lw.w_gate = mat(c.hidden_dim, c.dim);
    lw.w_down = mat(c.dim, c.hidden_dim);
    lw.w_up = mat(c.hidden_dim, c.dim);
    w.layers.push_back(lw);
  }
  w.output_norm = alloc(c.dim, 1.0f, 0.1f);
  w.output = mat(c.vocab_size, c.dim);
  model->storage = store;
  return model;
}

inline ModelConfig SmallConfig() {
  ModelConfig c;
  c.dim = 64;
  c.hidden_dim = 96;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.vocab_size = 50;
  c.max_seq_len = 128;
  return c;
}

}  // namespace cqkv::testing
