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

// One sequence's share of a batched step: a prompt chunk (several tokens) or a decode token.
struct BatchItem {
  KvCache* cache = nullptr;          // the sequence's cache; tokens go at cache->tokens(0) onward
  std::span<const int32_t> tokens;   // >= 1 tokens
  Mat logits;                        // (tokens.size(), vocab) for every position, (1, vocab) for
                                     // the last only, or rows == 0 for none (a non-final chunk)
};

class LlamaForward {
 public:
  LlamaForward(const Model& model, ThreadPool& pool);

  // Advances every item's sequence by its tokens in one pass: the items' rows form one
  // activation matrix, so each weight matrix is read once per step for the whole batch; decode
  // items (one token) attend together through DecodeAttention, prompt chunks through their
  // cache's Attend. Sequences are independent: an item's logits equal those of the same tokens
  // run alone up to fp32 rounding. Each cache may appear once. Throws cqkv::Error as Forward.
  void ForwardBatch(std::span<const BatchItem> items);

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
