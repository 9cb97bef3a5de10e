// The LLaMA decoder forward pass: RMSNorm, RoPE, grouped-query attention through a pluggable
// KV cache, SwiGLU MLP. One call processes a block of consecutive tokens (prefill when the block
// is long, decode when it is one token); the cache decides how K/V are stored.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "kv/kv_cache.h"
#include "model/model.h"
#include "util/thread_pool.h"

namespace cqkv {

class LlamaForward {
 public:
  LlamaForward(const Model& model, ThreadPool& pool);

  // Runs `tokens` at positions cache.tokens(0) onwards, appending their K/V to `cache`.
  // `logits` is (tokens.size(), vocab) for every position, or (1, vocab) for the last only.
  // Throws cqkv::Error for token ids outside the vocabulary or a full cache.
  void Forward(std::span<const int32_t> tokens, KvCache& cache, Mat logits);

  const Model& model() const { return model_; }

 private:
  void Resize(int64_t n);

  const Model& model_;
  ThreadPool& pool_;
  // Activations of the current block, each (n, width) row-major.
  std::vector<float> x_, xn_, q_, k_, k_pre_, v_, att_, proj_, gate_, up_;
};

// Convenience: a cache shaped for `model` with `max_tokens` capacity.
std::unique_ptr<KvCache> MakeCacheFor(const Model& model, const std::string& spec, int max_tokens);

}  // namespace cqkv
