// Common base of the baseline quantised KV formats (int, nf, kivi): prefill attention dequantises
// one (token, head) row at a time through CausalAttention, decode dequantises blocks of rows of a
// KV head into L1 scratch for the dense flash-decoding kernel, and the same row accessor lets
// tests and error analyses see exactly the values attention used. Also parses their KV format
// specs.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "kernels/attn_dense.h"
#include "kv/kv_cache.h"
#include "kv/rotated_heads.h"

namespace cqkv {

// BytesPerToken of every subclass is the most bytes one sequence's cache ever holds (over
// 1..max_tokens tokens: codes, fp16 side parameters, and transient full-precision buffers such as
// int<B>-channel's fp32 staging of a partial group or KIVI's fp16 window) divided by max_tokens.
// Capacity planning needs that peak; for per-token formats it is simply the per-token cost.
class QuantKvCache : public KvCache {
 public:
  // Largest head_dim Attend handles (its per-row scratch lives on the stack).
  static constexpr int kMaxHeadDim = 512;

  std::string format() const override { return spec_; }
  // Writes the head_dim values of kv head `kvh` of token t (t < tokens(layer)) as attention
  // sees them: dequantised keys (post-RoPE) or values; for a rotated format (rotation() set)
  // they are in the rotated domain, R k or R v.
  virtual void DequantHead(int layer, KvPart part, int64_t t, int kvh, float* out) const = 0;
  // One query row (decode) goes through DecodeAttention and AttendPartial, more through
  // CausalAttention; both see the values DequantHead gives, so they differ only in fp32 rounding.
  void Attend(int layer, ConstMat q, int64_t pos0, Mat out, ThreadPool& pool) const final;
  // Per page the range touches (ranges may span several): tokens the in-register kernel can read
  // in place (InPlaceRows) go to IntAttend; otherwise they are dequantised in blocks of
  // kDecodeScratchFloats / head_dim rows (64 at head_dim 128) and DenseAttendF32 runs on each
  // block: every row is decoded once for all the query heads of its group (GQA) rather than once
  // per head, and the dense kernel's vector dot/axpy read the block from L1. Every piece folds
  // into the one softmax state.
  void AttendPartial(int layer, int kv_head, const float* q_group, int group, int64_t t0,
                     int64_t t1, float* m, float* l, float* acc) const final;
  bool HasAttendPartial() const final { return true; }
  // A rotated format's prepared query is the query rotated (decode rotates it once per step);
  // AttendPartial rotates its own copy.
  void PrepareQuery(int layer, int kv_head, const float* q_group, int group,
                    float* prepared) const final;
  void AttendPartialPrepared(int layer, int kv_head, const float* prepared, int group, int64_t t0,
                             int64_t t1, float* m, float* l, float* acc) const final;
  // The per-head rotation rows are stored under (`int<B>-*:hadamard`), or null. Attend and
  // AttendPartial rotate the queries with it and rotate outputs back, so callers never see it.
  const HeadRotation* rotation() const { return rotation_.get(); }
  // DequantRows page by page: the rows DequantHead gives, rotated back to the model's space
  // when the format stores them rotated.
  void ReadRows(int layer, KvPart part, int64_t t0, int64_t n, int kvh, float* out) const override;
  bool HasReadRows() const override { return true; }
  // Bits of the quantised representation per cached channel, K and V averaged: codes plus side
  // parameters amortised over their group. Excludes transient buffers (staging, fp16 window),
  // which BytesPerToken counts; this is the number papers quote, e.g. 4.25 for int4-token:g128.
  double BitsPerChannel() const override = 0;

 protected:
  // pool: where pages come from (null: a private unbounded pool, kv/kv_cache.h). rotation: set
  // when the subclass stores rotated rows (its Append applies RotateRows), shared by siblings.
  QuantKvCache(const std::string& spec, const KvShape& shape, std::shared_ptr<PagePool> pool,
               std::shared_ptr<const HeadRotation> rotation = nullptr);
  // Floats of one K or V decode scratch block (32 KiB): its rows stay cache-resident between
  // decoding and the dense kernel.
  static constexpr int64_t kDecodeScratchFloats = 8192;

  // Layer `layer`'s rows of `part` for kv head kvh from token t0 to the end of t0's page, when
  // the in-register kernel can read them in place (IntAttend); AttendPartial then skips the
  // scratch. Default: false.
  virtual bool InPlaceRows(int layer, KvPart part, int kvh, int64_t t0, IntRowsView* view) const;

  // Writes tokens [t0, t0 + n) of kv head kvh as (n, head_dim) row-major, exactly the rows
  // DequantHead gives. The tokens lie in one page (AttendPartial splits by page). The default calls
  // DequantHead per row; formats override it to hoist work shared by a block of rows (parameter
  // decoding, dispatch on the part or the window).
  virtual void DequantRows(int layer, KvPart part, int64_t t0, int64_t n, int kvh,
                           float* out) const;
  // Throws unless block continues layer's tokens and fits the capacity, then makes sure every
  // page the block needs is held (throwing kResourceExhausted when the pool is spent), so a
  // failed Append changes nothing.
  void CheckAppend(int layer, const KvBlock& block);

  // One token's kv_dim K or V values into `out` as they are stored: rotated per head when
  // rotation_ is set, else copied.
  void RotateRows(int layer, const float* row, float* out) const;

  std::string spec_;
  std::shared_ptr<const HeadRotation> rotation_;
};

// Bits per cached channel that BytesPerToken implies (everything counted, unlike
// KvCache::BitsPerChannel):
// BytesPerToken * 8 / (2 * n_layers * kv_dim).
double StorageBitsPerChannel(const KvCache& cache);

// A spec "<head>[:<letter><integer>]...", e.g. "int4-token:g64" or "kivi2:g32:r128".
struct QuantSpec {
  std::string text;  // the whole spec, for messages
  std::string head;  // before the first ':'
  std::map<char, int64_t> options;

  int64_t Get(char letter, int64_t fallback) const;
};

// Splits a spec, accepting only the option letters in `allowed`; each option appears at most
// once and is a non-negative decimal integer. Throws cqkv::Error naming the spec.
QuantSpec ParseQuantSpec(const std::string& spec, std::string_view allowed);
// Parses `digits`, the bit count cut from spec.head (the "4" of "int4-token"), and checks it is
// one of `allowed`. Throws naming the spec.
int ParseBits(const QuantSpec& spec, std::string_view digits, std::initializer_list<int> allowed);

}  // namespace cqkv
