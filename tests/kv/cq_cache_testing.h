// Reference rows and checks shared by the CQ cache tests (cq_cache_test.cc,
// cq_cache_additive_test.cc, cq_cache_ropecomm_test.cc): a row as its codebooks dequantise it,
// found by the double-precision nearest-centroid search, and the aimed-query check of layouts.
#pragma once

#include <gtest/gtest.h>

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

// AttendPartial of KV head `kvh`'s `group` query heads (q_group: (group, head_dim), already
// scaled) over tokens [t0, t1), normalised (acc / l): those heads' attention output over that
// range, (group, head_dim).
inline std::vector<float> PartialAttention(const KvCache& cache, int layer, int kvh,
                                           const float* q_group, int group, int64_t t0,
                                           int64_t t1) {
  const int hd = cache.shape().head_dim;
  std::vector<float> m(group), l(group), out(static_cast<size_t>(group) * hd);
  cache.AttendPartial(layer, kvh, q_group, group, t0, t1, m.data(), l.data(), out.data());
  for (int i = 0; i < group * hd; ++i) out[i] /= l[i / hd];
  return out;
}

// Two layouts of the same tokens (e.g. plain and fast-scan keys) must attend alike. A score
// bound is loose for diffuse softmaxes (outputs near the values' mean pass it even with scrambled
// keys), so the query of every KV head's query heads is aimed at one cached key, 0.3 x k(token)
// (`k`: the post-RoPE keys appended, (tokens, kv_dim)): its exact score leads the others by tens
// of nats, far above any layout's score error, so both put nearly all weight on `token` and
// agree to 1e-3 over [0, n_ctx); keys read at the wrong place would move the output by O(1).
inline void ExpectAimedQueryAgrees(const KvCache& plain, const KvCache& other, const KvShape& s,
                                   int layer, const std::vector<float>& k, int64_t n_ctx,
                                   int64_t token) {
  const int kvd = s.kv_dim(), hd = s.head_dim, group = s.n_heads / s.n_kv_heads;
  for (int kvh = 0; kvh < s.n_kv_heads; ++kvh) {
    std::vector<float> qa(static_cast<size_t>(group) * hd);
    for (int i = 0; i < group * hd; ++i) qa[i] = 0.3f * k[token * kvd + kvh * hd + i % hd];
    const std::vector<float> a = PartialAttention(plain, layer, kvh, qa.data(), group, 0, n_ctx);
    const std::vector<float> b = PartialAttention(other, layer, kvh, qa.data(), group, 0, n_ctx);
    for (int i = 0; i < group * hd; ++i)
      ASSERT_NEAR(b[i], a[i], 1e-3)
          << "query aimed at token " << token << ", kv head " << kvh << " value " << i;
  }
}

}  // namespace cqkv::testing
