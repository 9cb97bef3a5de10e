// The LLaMA decoder forward pass: RMSNorm, RoPE, grouped-query attention through a pluggable
// KV cache, SwiGLU MLP. One call processes a block of consecutive tokens (prefill when the block
// is long, decode when it is one token); the cache decides how K/V are stored.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "kv/decode_attention.h"
#include "kv/kv_cache.h"
#include "model/model.h"
#include "util/thread_pool.h"

namespace cqkv {

// One sequence's share of a batched step: a prompt chunk (several tokens) or a decode token.
struct BatchItem {
  KvCache* cache = nullptr;         // the sequence's cache; tokens go at cache->tokens(0) onward
  std::span<const int32_t> tokens;  // >= 1 tokens
  Mat logits;                       // (tokens.size(), vocab) for every position, (1, vocab) for
                                    // the last only, or rows == 0 for none (a non-final chunk)
};

class LlamaForward {
 public:
  LlamaForward(const Model& model, ThreadPool& pool);

  // Advances every item's sequence by its tokens in one pass: the items' rows form one
  // activation matrix, so each weight matrix is read once per step for the whole batch; decode
  // items (one token, a cache with AttendPartial) attend together through DecodeAttention, the
  // others (prompt chunks) through their cache's Attend. Sequences are independent: an item's
  // logits equal those of the same tokens run alone in the same pieces up to fp32 rounding
  // (MatMul rounds differently from 8 rows on), which a format storing K/V in fewer bits can
  // amplify by rounding a value on a boundary the other way. Each cache may appear once. Throws
  // cqkv::Error, before any cache changes, for an item without tokens, a token id outside the
  // vocabulary, a cache shaped for another model or too small for the tokens, a cache appearing
  // twice or a logits view of the wrong shape. Pages are not reserved here: a KV page pool running
  // dry mid-step throws from Append and leaves the step half done, so schedulers reserve
  // (KvCache::TryReserve) before the step.
  void ForwardBatch(std::span<const BatchItem> items);

  // Runs `tokens` at positions cache.tokens(0) onwards, appending their K/V to `cache`: a batch
  // of one item. `logits` is (tokens.size(), vocab) for every position, (1, vocab) for the last
  // only or (0, vocab) for none. Empty `tokens` do nothing. Throws as ForwardBatch.
  void Forward(std::span<const int32_t> tokens, KvCache& cache, Mat logits);

  const Model& model() const { return model_; }

 private:
  void Resize(int64_t n);

  const Model& model_;
  ThreadPool& pool_;
  // Activations of the current step's n rows (all items' tokens, decode items first), each
  // (n, width) row-major: x_, xn_, proj_ (n, dim); q_, att_ (n, n_heads * head_dim);
  // k_, k_pre_, v_ (n, kv_dim); gate_, up_ (n, hidden_dim).
  std::vector<float> x_, xn_, q_, k_, k_pre_, v_, att_, proj_, gate_, up_;
  // (n_out, vocab): logits of the rows that want them, when the items' views are scattered.
  std::vector<float> logits_;
  // Per item: its first activation row and the position of its first token.
  std::vector<int64_t> row0_, pos0_;
  std::vector<DecodeSeq> decode_;  // (B_dec): the decode items, in row order
};

// Convenience: a cache shaped for `model` with `max_tokens` capacity.
std::unique_ptr<KvCache> MakeCacheFor(const Model& model, const std::string& spec, int max_tokens);

}  // namespace cqkv
