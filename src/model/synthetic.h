// Models with random weights and no file behind them: unit tests use small ones, benchmarks and
// `cqkv calibrate --synthetic` use 7B-shaped layers (the shapes of real models without needing
// their weights), stored as F32/F16 or block-quantised as GGUF files store them.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "model/model.h"

namespace cqkv {

// Weights uniform in [-scale, scale) (matrices) and 1 +- 0.1 (norm gains), from a fixed-seed
// xorshift generator (util/fast_rng.h) so runs are reproducible and generating billions of
// values stays fast.
// Matrices are stored as `matrices`: F32, F16, BF16, Q8_0 or Q4_0 (norms stay F32). Each row is
// drawn in fp32 into a one-row buffer and encoded with kernels/dequant.h's QuantizeRow, so only
// the stored matrices stay in memory (a 7B-shaped Q4_0 model needs its ~3.6 GB, not 26 GB of
// fp32 first) and every type draws the same numbers: a Q4_0 model is the F32 model of the same
// seed, quantised. Q/K/V biases (uniform in [-0.5, 0.5)) and per-head Q/K norm gains (1 +- 0.3)
// are made when the config asks for them.
// Throws cqkv::Error for another type, or for a Q type whose block does not divide a row.
std::unique_ptr<Model> MakeSyntheticModel(const ModelConfig& config, uint64_t seed,
                                          float scale = 0.1f, DType matrices = DType::kF32);

// LLaMA-2-7B dimensions (dim 4096, hidden 11008, 32 heads) with `n_layers` layers, a small
// vocabulary (so the classifier does not dominate a per-layer measurement) and `n_kv_heads`
// KV heads (32 for LLaMA-2-7B, 8 for Mistral-7B-like GQA).
ModelConfig SevenBShape(int n_layers, int n_kv_heads = 32, int vocab = 256, int ctx = 4096);

// What `--synthetic` names: "7b" followed by any of ":f32" ":f16" ":bf16" ":q8_0" ":q4_0"
// (matrix type), ":layers=N" (1..32) and ":kvh=N" (KV heads, dividing 32), e.g.
// "7b:q4_0:layers=4". Parts not given keep the values passed in `defaults`.
struct SyntheticSpec {
  int n_layers = 32;
  int n_kv_heads = 32;
  DType weights = DType::kF16;
  std::string Name() const;  // e.g. "synthetic-7b-32L-kvh32-q4_0"
};
// Throws cqkv::Error naming `flag` and the part at fault.
SyntheticSpec ParseSyntheticSpec(const std::string& text, SyntheticSpec defaults,
                                 const char* flag = "--synthetic");

// The matrix types accepted above, by their lower-case names ("f16", "q4_0"...).
DType ParseSyntheticWeights(const std::string& name, const char* flag);

}  // namespace cqkv
