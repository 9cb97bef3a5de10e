#include "eval/prefix_replay_cache.h"

#include "util/error.h"

namespace cqkv {
namespace {

void CopyRows(ConstMat m, std::vector<float>& out) {
  out.resize(static_cast<size_t>(m.rows * m.cols));
  for (int64_t r = 0; r < m.rows; ++r) {
    std::copy_n(m.Row(r), m.cols, out.data() + r * m.cols);
  }
}

}  // namespace

PrefixRecordingCache::PrefixRecordingCache(std::unique_ptr<KvCache> inner)
    : KvCache(inner->shape(), nullptr), inner_(std::move(inner)) {}

void PrefixRecordingCache::Append(int layer, const KvBlock& block) {
  inner_->Append(layer, block);
  Block b;
  b.layer = layer;
  b.pos0 = block.pos0;
  b.rows = block.k.rows;
  CopyRows(block.k_pre, b.k_pre);
  CopyRows(block.k, b.k);
  CopyRows(block.v, b.v);
  blocks_.push_back(std::move(b));
}

void PrefixRecordingCache::Clear() {
  inner_->Clear();
  blocks_.clear();
}

void PrefixRecordingCache::ReplayPrefix(KvCache& target) const {
  CQKV_CHECK(target.tokens(0) == 0, "prefix replay needs an empty cache, it holds {} tokens",
             target.tokens(0));
  const int64_t w = shape_.kv_dim();
  for (const Block& b : blocks_) {
    KvBlock kb;
    kb.pos0 = b.pos0;
    kb.k_pre = ConstMat(b.k_pre.data(), b.rows, w);
    kb.k = ConstMat(b.k.data(), b.rows, w);
    kb.v = ConstMat(b.v.data(), b.rows, w);
    target.Append(b.layer, kb);
  }
}

}  // namespace cqkv
