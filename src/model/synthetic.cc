#include "model/synthetic.h"

#include <vector>

#include "util/error.h"

#include "util/fast_rng.h"
#include "util/fp16.h"

namespace cqkv {

std::unique_ptr<Model> MakeSyntheticModel(const ModelConfig& c, uint64_t seed, float scale,
                                          DType matrices) {
  CQKV_CHECK(matrices == DType::kF32 || matrices == DType::kF16,
             "synthetic models store F32 or F16 matrices, not {}", DTypeName(matrices));
  auto model = std::make_unique<Model>();
  model->path = "<synthetic>";
  model->file_format = "synthetic";
  model->config = c;
  struct Store {
    std::vector<std::vector<float>> f32;
    std::vector<std::vector<uint16_t>> f16;
  };
  auto store = std::make_shared<Store>();
  store->f32.reserve(static_cast<size_t>(4 + 14 * c.n_layers));  // data pointers must stay stable
  store->f16.reserve(static_cast<size_t>(4 + 14 * c.n_layers));
  FastRng rng(seed);
  auto alloc = [&](int64_t n, float mean, float amp) {
    auto& v = store->f32.emplace_back(static_cast<size_t>(n));
    for (auto& x : v) x = mean + amp * rng.Next();
    return v.data();
  };
  auto mat = [&](int64_t rows, int64_t cols, const char* name) {
    if (matrices == DType::kF32) {
      return WeightMatrix{DType::kF32, rows, cols, alloc(rows * cols, 0.0f, scale), name};
    }
    auto& v = store->f16.emplace_back(static_cast<size_t>(rows * cols));
    for (auto& x : v) x = F32ToF16(scale * rng.Next());
    return WeightMatrix{DType::kF16, rows, cols, v.data(), name};
  };
  const int64_t q_dim = c.q_dim();
  ModelWeights& w = model->weights;
  w.tok_embd = mat(c.vocab_size, c.dim, "token_embd");
  for (int l = 0; l < c.n_layers; ++l) {
    LayerWeights lw;
    lw.attn_norm = alloc(c.dim, 1.0f, 0.1f);
    lw.wq = mat(q_dim, c.dim, "attn_q");
    lw.wk = mat(c.kv_dim(), c.dim, "attn_k");
    lw.wv = mat(c.kv_dim(), c.dim, "attn_v");
    lw.wo = mat(c.dim, q_dim, "attn_output");
    lw.ffn_norm = alloc(c.dim, 1.0f, 0.1f);
    lw.w_gate = mat(c.hidden_dim, c.dim, "ffn_gate");
    lw.w_down = mat(c.dim, c.hidden_dim, "ffn_down");
    lw.w_up = mat(c.hidden_dim, c.dim, "ffn_up");
    // Drawn last, so models without these features keep the values they always had.
    if (c.attn_bias) {
      lw.bq = alloc(q_dim, 0.0f, 0.5f);
      lw.bk = alloc(c.kv_dim(), 0.0f, 0.5f);
      lw.bv = alloc(c.kv_dim(), 0.0f, 0.5f);
    }
    if (c.qk_norm) {
      lw.q_norm = alloc(c.head_dim(), 1.0f, 0.3f);
      lw.k_norm = alloc(c.head_dim(), 1.0f, 0.3f);
    }
    w.layers.push_back(lw);
  }
  w.output_norm = alloc(c.dim, 1.0f, 0.1f);
  w.output = mat(c.vocab_size, c.dim, "output");
  model->storage = store;
  return model;
}

ModelConfig SevenBShape(int n_layers, int n_kv_heads, int vocab, int ctx) {
  ModelConfig c;
  c.dim = 4096;
  c.hidden_dim = 11008;
  c.n_layers = n_layers;
  c.n_heads = 32;
  c.n_kv_heads = n_kv_heads;
  c.vocab_size = vocab;
  c.max_seq_len = ctx;
  return c;
}

}  // namespace cqkv
