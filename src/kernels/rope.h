// Rotary position embedding. kNorm rotates consecutive channel pairs (2i, 2i+1) of each head
// (llama.cpp NORM, llama2.c); kNeox rotates (i, i + d/2) (Hugging Face / NeoX). Shared by the
// forward pass (model/) and by KV formats that store pre-RoPE keys and rotate them when attending.
#pragma once

#include <cstdint>
#include <vector>

namespace cqkv {

// How RoPE pairs the channels of a head. GGUF `llama` models and llama2.c checkpoints rotate
// consecutive pairs (2i, 2i+1) (llama.cpp "NORM"); Hugging Face / NeoX layouts rotate
// (i, i + d/2) ("NEOX").
enum class RopeType { kNorm, kNeox };

// Rotates `n_heads` consecutive heads of `head_dim` channels in x, at position `pos`.
// Angles are computed in double: theta_i = pos * base^(-2i/head_dim).
void ApplyRope(float* x, int n_heads, int head_dim, int64_t pos, float freq_base, RopeType type);

// Precomputed cos/sin for positions [0, max_pos), for hot paths that rotate many vectors
// (pre-RoPE key caches rotate every cached key at attention time). Same values as ApplyRope.
class RopeTable {
 public:
  RopeTable() = default;
  RopeTable(int head_dim, int64_t max_pos, float freq_base, RopeType type);
  // Rotates one head (head_dim channels) to position pos; `inverse` rotates back.
  void Rotate(float* head, int64_t pos, bool inverse = false) const;
  int64_t max_pos() const { return max_pos_; }
  int64_t bytes() const {
    return static_cast<int64_t>((cos_.size() + sin_.size()) * sizeof(float));
  }

 private:
  int head_dim_ = 0;
  int64_t max_pos_ = 0;
  RopeType type_ = RopeType::kNorm;
  std::vector<float> cos_, sin_;  // (max_pos, head_dim / 2)
};

}  // namespace cqkv
