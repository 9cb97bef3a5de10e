// Hyper-parameters of a LLaMA-family decoder, filled by a loader (GGUF or llama2.c) and
// read by the forward pass and the tools; KV caches see them as a KvShape (model/kv_shape.h).
#pragma once

#include <cstdint>
#include <string>

#include "kernels/rope.h"  // RopeType

namespace cqkv {

struct ModelConfig {
  std::string arch = "llama";
  int dim = 0;         // residual width
  int hidden_dim = 0;  // SwiGLU inner width
  int n_layers = 0;
  int n_heads = 0;     // query heads
  int n_kv_heads = 0;  // key/value heads (GQA when < n_heads)
  int vocab_size = 0;
  int max_seq_len = 0;  // context length the model was trained for
  float rope_freq_base = 10000.0f;
  float rms_eps = 1e-5f;
  RopeType rope_type = RopeType::kNorm;

  int head_dim() const { return dim / n_heads; }
  int kv_dim() const { return n_kv_heads * head_dim(); }
  int q_per_kv() const { return n_heads / n_kv_heads; }
  // Weights of one layer's matrices (Q, K, V, output; gate, up, down): the multiply-adds a layer
  // spends per token outside attention.
  int64_t LayerMatrixWeights() const {
    const int64_t hd = head_dim();
    return int64_t{dim} * hd * (2 * n_heads + 2 * n_kv_heads) + 3 * int64_t{dim} * hidden_dim;
  }
};

}  // namespace cqkv
