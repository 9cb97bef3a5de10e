// Views of a LLaMA-family model's weights in their stored types. Everything points into a
// memory-mapped file owned by the loader's Model object, so a 7B model costs no copy of its
// weights. Shapes use ModelConfig's names (q_dim = n_heads * head_dim, which need not be dim).
#pragma once

#include <vector>

#include "util/tensor.h"

namespace cqkv {

struct LayerWeights {
  const float* attn_norm = nullptr;  // (dim)
  WeightMatrix wq;                   // (q_dim, dim)
  WeightMatrix wk;                   // (kv_dim, dim)
  WeightMatrix wv;                   // (kv_dim, dim)
  WeightMatrix wo;                   // (dim, q_dim)
  // Biases added after the projections, each null when the model has none (see
  // ModelConfig::attn_bias).
  const float* bq = nullptr;  // (q_dim)
  const float* bk = nullptr;  // (kv_dim)
  const float* bv = nullptr;  // (kv_dim)
  // Set exactly when ModelConfig::qk_norm: per-head RMSNorm weights, shared by all heads
  // (the backward pass sizes its scratch by the flag).
  const float* q_norm = nullptr;    // (head_dim)
  const float* k_norm = nullptr;    // (head_dim)
  const float* ffn_norm = nullptr;  // (dim)
  WeightMatrix w_gate;              // (hidden, dim)   llama2.c w1
  WeightMatrix w_down;              // (dim, hidden)   llama2.c w2
  WeightMatrix w_up;                // (hidden, dim)   llama2.c w3
};

struct ModelWeights {
  WeightMatrix tok_embd;               // (vocab, dim)
  std::vector<LayerWeights> layers;    // n_layers
  const float* output_norm = nullptr;  // (dim)
  WeightMatrix output;                 // (vocab, dim); same data as tok_embd when tied
  // Vectors stored as F16/BF16 (or unaligned) in a file are widened here (they are tiny).
  std::vector<std::vector<float>> owned_norms;
};

}  // namespace cqkv
