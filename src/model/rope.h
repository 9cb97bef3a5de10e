// Rotary position embedding. kNorm rotates consecutive channel pairs (2i, 2i+1) of each head
// (llama.cpp NORM, llama2.c); kNeox rotates (i, i + d/2) (Hugging Face / NeoX). Shared by the
// forward pass and by KV formats that store pre-RoPE keys and rotate them when attending.
#pragma once

#include <cstdint>

#include "model/config.h"

namespace cqkv {

// Rotates `n_heads` consecutive heads of `head_dim` channels in x, at position `pos`.
// Angles are computed in double: theta_i = pos * base^(-2i/head_dim).
void ApplyRope(float* x, int n_heads, int head_dim, int64_t pos, float freq_base, RopeType type);

}  // namespace cqkv
