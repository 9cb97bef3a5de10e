// The cq cache with additive values: decode attention goes through the masked-add kernel
// (kernels/attn_cq_values.h), prefill through the expanded tables; both must equal
// dequantise-then-attend.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "kernels/rope.h"
#include "kv/cq_cache.h"
#include "kv/cq_cache_testing.h"
#include "kv/kv_testing.h"
#include "quant/additive_codebook.h"
#include "quant/codebook.h"
#include "quant/kmeans.h"
#include "sanitizer_testing.h"
#include "util/error.h"

namespace cqkv {
namespace {

using testing::Dequantise;
using testing::DequantisedKey;

// 600 tokens (several 256-token pages and kernel blocks; 520 under the sanitizers, still three
// pages, the last partial), then single-token decode steps and one prefill block, against naive
// attention over the dequantised rows. 1e-5 relative: the cache sums the same fp32 products in
// another order.
TEST(CqCacheAdditive, DecodeAndPrefillMatchDequantisedReference) {
  const int64_t first_block = testing::kSanitized ? 520 : 600;
  for (const char* config : {"4c8b", "8c8b", "4c4b"}) {
    for (bool pre : {false, true}) {
      KvShape s = testing::TestShape(8, 2, 32, 1024);
      s.page_tokens = 256;
      CodebookSet cb = RandomCodebooks(s, CqConfig::Parse(config), 5,
                                       pre ? KeyPosition::kPreRope : KeyPosition::kPostRope);
      RandomAdditiveValues(cb, 6);
      auto cache = MakeCqCache(cb, s, 0, "cq:<additive test>");
      ThreadPool pool(2);
      std::mt19937 rng(1);
      std::normal_distribution<float> nd;
      const int kvd = s.kv_dim(), layer = 1;
      std::vector<float> ref_k, ref_v;
      int64_t pos = 0;
      for (int64_t block : {first_block, int64_t{1}, int64_t{1}, int64_t{7}}) {
        std::vector<float> k_pre(static_cast<size_t>(block * kvd)), v(k_pre.size()),
            q(static_cast<size_t>(block * s.q_dim()));
        for (auto& x : k_pre) x = nd(rng);
        for (auto& x : v) x = nd(rng);
        for (auto& x : q) x = nd(rng);
        std::vector<float> k = k_pre;
        for (int64_t i = 0; i < block; ++i) {
          ApplyRope(k.data() + i * kvd, s.n_kv_heads, s.head_dim, pos + i, s.rope);
          const std::vector<float> dk = DequantisedKey(cb, s, layer, pre, pos + i,
                                                       k_pre.data() + i * kvd, k.data() + i * kvd);
          const std::vector<float> dv = Dequantise(cb, layer, 1, v.data() + i * kvd);
          ref_k.insert(ref_k.end(), dk.begin(), dk.end());
          ref_v.insert(ref_v.end(), dv.begin(), dv.end());
        }
        for (int l = 0; l < s.n_layers; ++l) {
          cache->Append(l, KvBlock{pos, ConstMat(k_pre.data(), block, kvd),
                                   ConstMat(k.data(), block, kvd), ConstMat(v.data(), block, kvd)});
        }
        const int64_t pos0 = pos;
        pos += block;
        // The last query alone (decode path), then the whole block (prefill path).
        const int qd = s.q_dim();
        std::vector<float> out(q.size()), last(static_cast<size_t>(qd));
        cache->Attend(layer, ConstMat(q.data() + (block - 1) * qd, 1, qd), pos - 1,
                      Mat(last.data(), 1, qd), pool);
        cache->Attend(layer, ConstMat(q.data(), block, qd), pos0, Mat(out.data(), block, qd), pool);
        const auto ref = testing::NaiveAttention(s, q, block, pos0, ref_k, ref_v);
        for (int i = 0; i < qd; ++i) {
          const double r = ref[(block - 1) * qd + i];
          ASSERT_NEAR(last[i], r, 1e-5 * (1 + std::fabs(r)))
              << config << " pre=" << pre << " decode at " << pos - 1 << " i=" << i;
        }
        for (size_t i = 0; i < out.size(); i += 7) {
          ASSERT_NEAR(out[i], ref[i], 1e-5 * (1 + std::fabs(ref[i])))
              << config << " pre=" << pre << " prefill at " << pos0 << " i=" << i;
        }
      }
    }
  }
}

// A mixed spec keeps only some layers of a .cqcb: their value bases must follow their tables,
// or decode would sum another layer's bases. Layer 1 of "fp16;cq:PATH@1" decodes exactly as
// layer 1 of the whole-model cache.
TEST(CqCacheAdditive, MixedSpecsSliceTheValueBases) {
  KvShape s = testing::TestShape(8, 2, 32, 1024, /*n_layers=*/3);
  s.model_fingerprint = 0x1234;
  CodebookSet cb = RandomCodebooks(s, CqConfig::Parse("4c8b"), 7);
  RandomAdditiveValues(cb, 8);
  const std::string path = ::testing::TempDir() + "/cq_cache_additive_mixed.cqcb";
  SaveCodebooks(cb, path);
  auto whole = MakeKvCache("cq:" + path, s);
  auto mixed = MakeKvCache("fp16;cq:" + path + "@1", s);
  ThreadPool pool(2);
  std::mt19937 rng(2);
  std::normal_distribution<float> nd;
  const int kvd = s.kv_dim(), qd = s.q_dim(), n = 400;
  std::vector<float> k(static_cast<size_t>(n) * kvd), v(k.size()), q(static_cast<size_t>(qd));
  for (auto* x : {&k, &v, &q}) {
    for (auto& e : *x) e = nd(rng);
  }
  for (KvCache* c : {whole.get(), mixed.get()}) {
    for (int l = 0; l < s.n_layers; ++l) {
      const ConstMat km(k.data(), n, kvd), vm(v.data(), n, kvd);
      c->Append(l, KvBlock{0, km, km, vm});
    }
  }
  std::vector<float> a(static_cast<size_t>(qd)), b(a.size());
  whole->Attend(1, ConstMat(q.data(), 1, qd), n - 1, Mat(a.data(), 1, qd), pool);
  mixed->Attend(1, ConstMat(q.data(), 1, qd), n - 1, Mat(b.data(), 1, qd), pool);
  for (int i = 0; i < qd; ++i) ASSERT_NEAR(a[i], b[i], 1e-5 * (1 + std::fabs(a[i]))) << i;
  std::remove(path.c_str());
}

TEST(CqCacheAdditive, RefusesHeadsWhoseCodesSplitBytes) {
  // 4c4b at head dim 4: one 4-bit code per head, so the second head starts mid-byte.
  const KvShape s = testing::TestShape(2, 2, 4, 16);
  CodebookSet cb = RandomCodebooks(s, CqConfig{4, 4}, 1);
  RandomAdditiveValues(cb, 2);
  EXPECT_THROW(MakeCqCache(cb, s, 0, "cq:<odd>"), Error);
}

// Fast-scan keys with additive values (CqAttendAdditiveFastScan): the same decode as the plain
// layout up to the fast-scan score bound, checked with a query aimed at token 777 (the bound
// alone is loose; see ExpectAimedQueryAgrees).
TEST(CqCacheAdditive, FastScanKeysAgreeWithPlainLayout) {
  for (const char* config : {"4c8b", "8c8b", "4c4b"}) {
    SCOPED_TRACE(config);
    KvShape s = testing::TestShape(8, 2, 128, 1100);
    s.page_tokens = 256;
    CodebookSet cb = RandomCodebooks(s, CqConfig::Parse(config), 3);
    RandomAdditiveValues(cb, 4);
    auto plain = MakeCqCache(cb, s, 0, "cq:<additive>");
    auto fast = MakeCqCache(cb, s, 0, "cq:<additive>:fs", /*fast_scan=*/true);
    std::mt19937 rng(5);
    std::normal_distribution<float> nd;
    const int kvd = s.kv_dim(), n = 1100;
    std::vector<float> k(static_cast<size_t>(n) * kvd), v(k.size());
    for (auto* x : {&k, &v}) {
      for (float& e : *x) e = nd(rng);
    }
    for (KvCache* c : {plain.get(), fast.get()}) {
      for (int l = 0; l < s.n_layers; ++l) {
        const ConstMat km(k.data(), n, kvd), vm(v.data(), n, kvd);
        c->Append(l, KvBlock{0, km, km, vm});
      }
    }
    ASSERT_NO_FATAL_FAILURE(testing::ExpectAimedQueryAgrees(*plain, *fast, s, 1, k, n, 777));
  }
}

}  // namespace
}  // namespace cqkv
