// Views of a LLaMA model's weights in their stored types. Everything points into a memory-mapped
// file owned by the loader's Model object, so a 7B model costs no copy of its weights.
#pragma once

#include <vector>

#include "util/tensor.h"

namespace cqkv {

struct LayerWeights {
  const float* attn_norm = nullptr;  // (dim)
  WeightMatrix wq;                   // (n_heads*head_dim, dim)
  WeightMatrix wk;                   // (n_kv_heads*head_dim, dim)
  WeightMatrix wv;                   // (n_kv_heads*head_dim, dim)
  WeightMatrix wo;                   // (dim, n_heads*head_dim)
  const float* ffn_norm = nullptr;   // (dim)
  WeightMatrix w_gate;               // (hidden, dim)   llama2.c w1
  WeightMatrix w_down;               // (dim, hidden)   llama2.c w2
  WeightMatrix w_up;                 // (hidden, dim)   llama2.c w3
};

struct ModelWeights {
  WeightMatrix tok_embd;               // (vocab, dim)
  std::vector<LayerWeights> layers;    // n_layers
  const float* output_norm = nullptr;  // (dim)
  WeightMatrix output;                 // (vocab, dim); same data as tok_embd when tied
  // Norm vectors stored as F16/BF16 in a file are widened here (they are tiny).
  std::vector<std::vector<float>> owned_norms;
};

}  // namespace cqkv
