// Reference rows shared by the CQ cache tests (cq_cache_test.cc, cq_cache_additive_test.cc,
// cq_cache_ropecomm_test.cc): a row as its codebooks dequantise it, found by the
// double-precision nearest-centroid search.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/rope.h"
#include "kv/kv_cache.h"
#include "quant/codebook.h"
#include "quant/kmeans.h"

namespace cqkv::testing {

// The dequantised row of `x` (kv_dim) under one (layer, kind) of `cb`: each group replaced by its
// nearest centroid.
inline std::vector<float> Dequantise(const CodebookSet& cb, int layer, int kind, const float* x) {
  const int c = cb.config.channels;
  std::vector<float> out(static_cast<size_t>(cb.kv_dim()));
  for (int g = 0; g < cb.n_groups(); ++g) {
    const float* table = cb.Table(layer, kind, g);
    int32_t code;
    AssignNearestRef(ConstMat(x + g * c, 1, c), ConstMat(table, cb.config.n_centroids(), c), &code);
    std::copy_n(table + code * c, c, out.begin() + g * c);
  }
  return out;
}

// The key of the token at `pos` as a CQ cache scores it (after RoPE): pre-RoPE codebooks
// (`pre`) quantise k_pre and the centroids are rotated; post-RoPE ones quantise k.
inline std::vector<float> DequantisedKey(const CodebookSet& cb, const KvShape& s, int layer,
                                         bool pre, int64_t pos, const float* k_pre,
                                         const float* k) {
  std::vector<float> dk = Dequantise(cb, layer, 0, pre ? k_pre : k);
  if (pre) ApplyRope(dk.data(), s.n_kv_heads, s.head_dim, pos, s.rope);
  return dk;
}

}  // namespace cqkv::testing
