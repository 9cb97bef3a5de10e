// The cq cache with rope-comm keys: decode attention scores pre-RoPE codes with RopeCommScores
// (no per-token rotation table), prefill rotates each decoded key; both must equal attention over
// the dequantised keys rotated to their positions, and equal the pre-RoPE k-means cache.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernels/rope.h"
#include "kv/cq_cache.h"
#include "kv/cq_cache_testing.h"
#include "kv/kv_spec.h"
#include "kv/kv_testing.h"
#include "quant/codebook.h"
#include "quant/kmeans.h"
#include "test_util.h"
#include "util/error.h"

namespace cqkv {
namespace {

using testing::Dequantise;

// 2100 tokens (pages of 256, rope-comm blocks of 32 and a high step of 2048 crossed), then
// decode steps and a prefill block, against naive attention over dequantised, rotated keys.
// 1e-5 relative: fp32 sums in another order and the phase factors' fp32 rounding (~1e-7).
TEST(CqCacheRopeComm, DecodeAndPrefillMatchDequantisedReference) {
  for (const char* config : {"4c8b", "8c8b", "2c4b", "8c4b"}) {
    KvShape s = testing::TestShape(8, 2, 64, 2200);
    s.page_tokens = 256;
    CodebookSet cb = RandomCodebooks(s, CqConfig::Parse(config), 5, KeyPosition::kPreRope);
    cb.key_kind = KeyKind::kRopeComm;
    auto cache = MakeCqCache(cb, s, 0, "cq:<rope-comm test>");
    cb.key_kind = KeyKind::kKMeans;
    auto slow = MakeCqCache(cb, s, 0, "cq:<pre-rope test>");
    ThreadPool pool(2);
    std::mt19937 rng(1);
    std::normal_distribution<float> nd;
    const int kvd = s.kv_dim(), qd = s.q_dim(), layer = 1;
    std::vector<float> ref_k, ref_v;
    int64_t pos = 0;
    for (int64_t block : {2100, 1, 1, 7}) {
      std::vector<float> k_pre(static_cast<size_t>(block * kvd)), v(k_pre.size()),
          q(static_cast<size_t>(block * qd));
      for (auto* x : {&k_pre, &v, &q}) {
        for (auto& e : *x) e = nd(rng);
      }
      std::vector<float> k = k_pre;
      for (int64_t i = 0; i < block; ++i) {
        ApplyRope(k.data() + i * kvd, s.n_kv_heads, s.head_dim, pos + i, s.rope);
        const std::vector<float> dk = testing::DequantisedKey(
            cb, s, layer, /*pre=*/true, pos + i, k_pre.data() + i * kvd, k.data() + i * kvd);
        const std::vector<float> dv = Dequantise(cb, layer, 1, v.data() + i * kvd);
        ref_k.insert(ref_k.end(), dk.begin(), dk.end());
        ref_v.insert(ref_v.end(), dv.begin(), dv.end());
      }
      for (KvCache* c : {cache.get(), slow.get()}) {
        for (int l = 0; l < s.n_layers; ++l) {
          c->Append(l, KvBlock{pos, ConstMat(k_pre.data(), block, kvd),
                               ConstMat(k.data(), block, kvd), ConstMat(v.data(), block, kvd)});
        }
      }
      const int64_t pos0 = pos;
      pos += block;
      std::vector<float> out(q.size()), last(static_cast<size_t>(qd)), last_slow(last.size());
      const ConstMat q_last(q.data() + (block - 1) * qd, 1, qd);
      cache->Attend(layer, q_last, pos - 1, Mat(last.data(), 1, qd), pool);
      slow->Attend(layer, q_last, pos - 1, Mat(last_slow.data(), 1, qd), pool);
      if (block < 100) {  // prefill of the long block would need a slow reference
        cache->Attend(layer, ConstMat(q.data(), block, qd), pos0, Mat(out.data(), block, qd), pool);
      }
      // The long block's reference for its last query only (the decode path covers it).
      const std::vector<float> q_ref(q.begin() + (block < 100 ? 0 : (block - 1) * qd), q.end());
      const int64_t nq = block < 100 ? block : 1;
      const auto ref = testing::NaiveAttention(s, q_ref, nq, pos - nq, ref_k, ref_v);
      for (int i = 0; i < qd; ++i) {
        const double r = ref[(nq - 1) * qd + i];
        ASSERT_NEAR(last[i], r, 1e-5 * (1 + std::fabs(r)))
            << config << " decode at " << pos - 1 << " i=" << i;
        ASSERT_NEAR(last[i], last_slow[i], 1e-5 * (1 + std::fabs(r)))
            << config << " vs pre-RoPE k-means cache, decode at " << pos - 1 << " i=" << i;
      }
      if (block >= 100) continue;
      for (size_t i = 0; i < out.size(); ++i) {
        ASSERT_NEAR(out[i], ref[i], 1e-5 * (1 + std::fabs(ref[i])))
            << config << " prefill at " << pos0 << " i=" << i;
      }
    }
  }
}

// A rope-comm codebook file reaches the kernel through --kv cq:PATH (the kind decides), and
// NEOX models are refused naming the spec.
TEST(CqCacheRopeComm, FileSpecAndNeoxRefusal) {
  KvShape s = testing::TestShape(4, 1, 32, 512);
  CodebookSet cb = RandomCodebooks(s, CqConfig{4, 8}, 3, KeyPosition::kPreRope);
  cb.key_kind = KeyKind::kRopeComm;
  const std::string path = ::testing::TempDir() + "/cq_cache_ropecomm.cqcb";
  SaveCodebooks(cb, path);
  auto cache = MakeKvCache("cq:" + path, s);
  EXPECT_EQ(cache->format(), "cq:" + path);
  EXPECT_GT(cache->SharedBytes(), 0);
  s.rope.type = RopeType::kNeox;
  testing::ExpectErrorMentioning([&] { MakeKvCache("cq:" + path, s); }, {"cq:" + path, "NEOX"});
  std::remove(path.c_str());
}

}  // namespace
}  // namespace cqkv
