// TurboQuant-style KV format `tq<B>[:qjl]` (calibration-free, after Zandieh et al., "TurboQuant",
// 2025): each head's row x is split into |x| (fp16) and x/|x|, rotated by a per-layer randomized
// Hadamard matrix R = H D (kv/rotated_heads.h; seeded random signs, so rotated coordinates are
// close to N(0, 1/d)), and every rotated coordinate is coded with the B-bit Lloyd-Max quantiser
// of that density (kv/tq_lloyd_max.h). With `:qjl`, keys use B-1 such bits plus the 1-bit QJL
// sketch of their residual with its fp16 norm (kv/tq_qjl.h), TurboQuant's unbiased inner-product
// variant at the same B bits; values always use B bits. Attention rotates the query once per call
// (decode: once per step, KvCache::PrepareQuery), scores and sums values in the rotated domain,
// and rotates the output back.
//
// Page layout: per (layer, KV head) a key region then a value region of page_tokens rows each;
// a key row is [codes (d*Bk bits) | QJL signs (d bits, :qjl) | fp16 |x| | fp16 |r| (:qjl)], a
// value row [codes (d*B bits) | fp16 |x|].
#pragma once

#include <memory>
#include <string>

#include "kv/kv_cache.h"
#include "kv/kv_spec.h"

namespace cqkv {

class TqCache : public KvCache {
 public:
  // Largest head_dim handled (scratch rows).
  static constexpr int kMaxHeadDim = 512;

  // Writes the head_dim values of token t's kv head kvh as attention uses them, in the model's
  // (unrotated) domain: R^T of the dequantised rotated row; for :qjl keys R^T (k_mse + |r|
  // sqrt(pi/2)/d S^T z), the key whose dot with any query is the QJL estimate.
  virtual void DequantHead(int layer, bool key, int64_t t, int kvh, float* out) const = 0;
  // DequantHead row by row (model space), for composites (kv/mixed_cache.h).
  void ReadRows(int layer, KvPart part, int64_t t0, int64_t n, int kvh, float* out) const final {
    for (int64_t i = 0; i < n; ++i) {
      DequantHead(layer, part == KvPart::kKey, t0 + i, kvh, out + i * shape_.head_dim);
    }
  }
  bool HasReadRows() const final { return true; }
  // The key rows' code bits per channel (B, or B-1 with :qjl) and whether QJL is on.
  virtual int key_bits() const = 0;
  virtual bool qjl() const = 0;

 protected:
  using KvCache::KvCache;
};

// Throws cqkv::Error naming the spec unless head_dim is a power of two up to kMaxHeadDim.
std::unique_ptr<TqCache> MakeTqCache(const KvSpec& spec, const KvShape& shape);

}  // namespace cqkv
