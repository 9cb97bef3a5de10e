// Models with random F32 weights and no file behind them: unit tests use small ones, benchmarks
// use 7B-shaped layers (the shapes of real models without needing their weights).
#pragma once

#include <cstdint>
#include <memory>

#include "model/model.h"

namespace cqkv {

// Weights uniform in [-scale, scale] (matrices) and 1 +- 0.1 (norm gains), from a fixed-seed
// xorshift generator (util/fast_rng.h) so runs are reproducible and generating billions of
// values stays fast.
// Matrices are stored as `matrices` (F32 or F16; norms stay F32). Q/K/V biases (uniform in
// [-0.5, 0.5]) and per-head Q/K norm gains (1 +- 0.3) are made when the config asks for them.
std::unique_ptr<Model> MakeSyntheticModel(const ModelConfig& config, uint64_t seed,
                                          float scale = 0.1f, DType matrices = DType::kF32);

// LLaMA-2-7B dimensions (dim 4096, hidden 11008, 32 heads) with `n_layers` layers, a small
// vocabulary (so the classifier does not dominate a per-layer measurement) and `n_kv_heads`
// KV heads (32 for LLaMA-2-7B, 8 for Mistral-7B-like GQA).
ModelConfig SevenBShape(int n_layers, int n_kv_heads = 32, int vocab = 256, int ctx = 4096);

}  // namespace cqkv
