// Rotary position embedding. kNorm rotates consecutive channel pairs (2i, 2i+1) of each head
// (llama.cpp NORM, llama2.c); kNeox rotates (i, i + d/2) (Hugging Face / NeoX). Shared by the
// forward and backward passes (model/) and by KV formats that store pre-RoPE keys and rotate
// them when attending: all of them take one RopeParams, so they cannot disagree on the angles.
#pragma once

#include <cstdint>
#include <vector>

namespace cqkv {

// How RoPE pairs the channels of a head. GGUF `llama` models and llama2.c checkpoints rotate
// consecutive pairs (2i, 2i+1) (llama.cpp "NORM"); Hugging Face / NeoX layouts and GGUF
// `qwen2`/`qwen3` rotate (i, i + d/2) ("NEOX").
enum class RopeType { kNorm, kNeox };

// Everything that decides the rotation angles. Pair i of a head of d channels at position pos
// turns by
//   theta_i(pos) = pos * freq_scale * freq_base^(-2i/d) / freq_factors[i]
// as llama.cpp computes it (without YaRN): freq_scale is linear position interpolation
// (1 / `{arch}.rope.scaling.factor`), freq_factors are Llama-3.1's per-pair divisors
// (`rope_freqs.weight`); empty means all 1.
struct RopeParams {
  RopeType type = RopeType::kNorm;
  float freq_base = 10000.0f;
  float freq_scale = 1.0f;
  std::vector<float> freq_factors;  // (head_dim / 2) or empty

  bool operator==(const RopeParams&) const = default;
};

// Throws cqkv::Error naming `what` unless `p` suits heads of `head_dim` channels: even
// head_dim, finite positive base and scale, freq_factors empty or head_dim/2 finite positive
// values.
void CheckRopeParams(const RopeParams& p, int head_dim, const char* what);

// Rotates `n_heads` consecutive heads of `head_dim` channels in x to position `pos`.
// Angles are computed in double from the formula above.
void ApplyRope(float* x, int n_heads, int head_dim, int64_t pos, const RopeParams& p);

// Precomputed cos/sin for positions [0, max_pos), for hot paths that rotate many vectors
// (pre-RoPE key caches rotate every cached key at attention time). Same values as ApplyRope.
class RopeTable {
 public:
  RopeTable() = default;
  RopeTable(int head_dim, int64_t max_pos, const RopeParams& p);
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
