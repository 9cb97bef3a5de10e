// Next-token sampling: greedy at temperature 0, otherwise temperature + top-k + top-p (nucleus)
// + min-p with a seeded generator, so a run is reproducible from its seed.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace cqkv {

struct SamplerConfig {
  float temperature = 0.0f;  // 0: greedy
  int top_k = 40;            // <= 0: no top-k cut
  float top_p = 0.95f;       // >= 1: no nucleus cut
  float min_p = 0.0f;        // drops tokens with p < min_p * p_max; <= 0: no cut
  uint64_t seed = 42;
};

class Sampler {
 public:
  explicit Sampler(const SamplerConfig& cfg) : cfg_(cfg), rng_(cfg.seed) {}
  int32_t Sample(const float* logits, int64_t vocab);

 private:
  SamplerConfig cfg_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> cand_;
};

}  // namespace cqkv
