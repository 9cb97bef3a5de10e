// Decode attention (one new query token per sequence) split flash-decoding style: work units are
// (sequence, KV head, token block), each computed by KvCache::AttendPartial on the threads of a
// ThreadPool, then the partial softmax states of a (sequence, KV head) are merged.
#pragma once

#include <cstdint>
#include <span>

#include "kv/kv_cache.h"

namespace cqkv {

// One sequence of a decode batch: its cache and how many of its tokens the query attends to
// (all of them, its own included, in normal decoding: cache->tokens(layer)).
struct DecodeSeq {
  const KvCache* cache = nullptr;
  int64_t n_ctx = 0;
};

struct DecodeOptions {
  // Tokens per work unit; 0 picks the larger of kMinBlockTokens and the block that gives about
  // 4 units per thread, rounded up to a multiple of 256. Large blocks amortise the per-unit
  // set-up of the CQ kernels (tables).
  int64_t block_tokens = 0;
  static constexpr int64_t kMinBlockTokens = 1024;
};

// Attention of q (B, n_heads * head_dim) (row b = the query of seqs[b], already rotated; scaled
// here by 1/sqrt(head_dim)) over layer `layer` of each sequence; writes out (B, n_heads *
// head_dim). All caches must share one shape and implement AttendPartial. With
// options.block_tokens set the result is bit-identical for any thread count; the automatic
// block size follows the thread count, which changes only fp32 rounding (the merge order).
void DecodeAttention(std::span<const DecodeSeq> seqs, int layer, ConstMat q, Mat out,
                     ThreadPool& pool, const DecodeOptions& options = {});

}  // namespace cqkv
