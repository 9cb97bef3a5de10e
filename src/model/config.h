// Hyper-parameters of a LLaMA-family decoder (GGUF `llama`, `qwen2`, `qwen3`, llama2.c), filled
// by a loader and read by the forward/backward passes and the tools; KV caches see them as a
// KvShape (model/kv_shape.h).
#pragma once

#include <cstdint>
#include <string>

#include "kernels/rope.h"  // RopeParams

namespace cqkv {

struct ModelConfig {
  std::string arch = "llama";
  int dim = 0;         // residual width
  int hidden_dim = 0;  // SwiGLU inner width
  int n_layers = 0;
  int n_heads = 0;     // query heads
  int n_kv_heads = 0;  // key/value heads (GQA when < n_heads)
  // Channels per attention head, for keys, queries and values alike (GGUF
  // `{arch}.attention.key_length`, HF `head_dim`). 0 means dim / n_heads; it may differ from that
  // (qwen3), so Q and the attention output are n_heads * head_dim() wide, not dim.
  int head_size = 0;
  int vocab_size = 0;
  int max_seq_len = 0;  // context length the model was trained for
  float rms_eps = 1e-5f;
  // Some Q/K/V projection adds a bias (LayerWeights::bq/bk/bv, each null when absent): qwen2.
  bool attn_bias = false;
  // Q and K are RMS-normalised per head (weights LayerWeights::q_norm/k_norm, head_dim each,
  // eps rms_eps) after the projection and before RoPE: qwen3.
  bool qk_norm = false;
  RopeParams rope;  // type, base, linear scale, Llama-3.1 frequency factors

  int head_dim() const { return head_size > 0 ? head_size : dim / n_heads; }
  int64_t q_dim() const { return int64_t{n_heads} * head_dim(); }
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
