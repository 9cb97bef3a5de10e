// Shares a prompt prefix between several continuations with any KV format. KvCache has no copy,
// so the prefix runs once through a PrefixRecordingCache, which passes every call to a real cache
// of the chosen format and keeps a float copy of each block it is given; ReplayPrefix then
// appends those same blocks to a fresh sibling cache. The sibling ends up exactly as if the
// prefix had run through it (the format quantises the same K/V in the same blocks), for the cost
// of the format's Append instead of the model's forward pass.
#pragma once

#include <memory>
#include <vector>

#include "kv/kv_cache.h"

namespace cqkv {

class PrefixRecordingCache final : public KvCache {
 public:
  explicit PrefixRecordingCache(std::unique_ptr<KvCache> inner);

  std::string format() const override { return inner_->format(); }
  void Append(int layer, const KvBlock& block) override;
  void Attend(int layer, ConstMat q, int64_t pos0, Mat out, ThreadPool& pool) const override {
    inner_->Attend(layer, q, pos0, out, pool);
  }
  void AttendPartial(int layer, int kv_head, const float* q_group, int group, int64_t t0,
                     int64_t t1, float* m, float* l, float* acc) const override {
    inner_->AttendPartial(layer, kv_head, q_group, group, t0, t1, m, l, acc);
  }
  bool HasAttendPartial() const override { return inner_->HasAttendPartial(); }
  int64_t PreparedQueryFloats(int layer, int group) const override {
    return inner_->PreparedQueryFloats(layer, group);
  }
  void PrepareQuery(int layer, int kv_head, const float* q_group, int group,
                    float* prepared) const override {
    inner_->PrepareQuery(layer, kv_head, q_group, group, prepared);
  }
  void AttendPartialPrepared(int layer, int kv_head, const float* prepared, int group, int64_t t0,
                             int64_t t1, float* m, float* l, float* acc) const override {
    inner_->AttendPartialPrepared(layer, kv_head, prepared, group, t0, t1, m, l, acc);
  }
  int64_t ExactPrefillRows(int layer) const override { return inner_->ExactPrefillRows(layer); }
  int64_t tokens(int layer) const override { return inner_->tokens(layer); }
  // Drops the inner cache's tokens and the recording.
  void Clear() override;
  double BytesPerToken() const override { return inner_->BytesPerToken(); }
  double BitsPerChannel() const override { return inner_->BitsPerChannel(); }
  // A sibling of the inner cache (not recording).
  std::unique_ptr<KvCache> NewSibling(std::shared_ptr<PagePool> pool = nullptr) const override {
    return inner_->NewSibling(std::move(pool));
  }
  int64_t PageBytes() const override { return inner_->PageBytes(); }
  int64_t FixedBytes() const override { return inner_->FixedBytes(); }
  int64_t SharedBytes() const override { return inner_->SharedBytes(); }

  // Appends every recorded block, in the order recorded, to `target` (empty, same shape).
  void ReplayPrefix(KvCache& target) const;

 private:
  struct Block {
    int layer = 0;
    int64_t pos0 = 0;
    int64_t rows = 0;
    std::vector<float> k_pre, k, v;  // (rows, kv_dim) each
  };
  std::unique_ptr<KvCache> inner_;
  std::vector<Block> blocks_;
};

}  // namespace cqkv
