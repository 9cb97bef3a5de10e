// Small model shapes for unit tests; the weights come from MakeSyntheticModel.
#pragma once

#include "model/synthetic.h"

namespace cqkv::testing {

inline std::unique_ptr<Model> MakeRandomModel(const ModelConfig& c, uint32_t seed,
                                              float scale = 0.1f) {
  return MakeSyntheticModel(c, seed, scale);
}

inline ModelConfig SmallConfig() {
  ModelConfig c;
  c.dim = 64;
  c.hidden_dim = 96;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.vocab_size = 50;
  c.max_seq_len = 128;
  return c;
}

}  // namespace cqkv::testing
