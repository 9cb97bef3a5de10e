// Hyper-parameters of a LLaMA-family decoder, filled by a loader (GGUF or llama2.c) and
// read by the forward pass, the KV-cache formats and the tools.
#pragma once

#include <cstdint>
#include <string>

namespace cqkv {

// How RoPE pairs the channels of a head. GGUF `llama` models and llama2.c checkpoints rotate
// consecutive pairs (2i, 2i+1) (llama.cpp "NORM"); Hugging Face / NeoX layouts rotate
// (i, i + d/2) ("NEOX").
enum class RopeType { kNorm, kNeox };

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
};

}  // namespace cqkv
