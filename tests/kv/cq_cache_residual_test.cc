// The cq cache with residual (two-stage) values decodes on the exact path from the expanded V
// tables, so it must give bit-identical attention to a k-means cache holding the same tables.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kv/cq_cache.h"
#include "kv/kv_testing.h"
#include "quant/codebook.h"
#include "quant/residual_codebook.h"
#include "test_util.h"
#include "util/error.h"

namespace cqkv {
namespace {

// Decode (one query) and prefill (a block of queries) over 600 tokens, pre- and post-RoPE keys,
// 8-bit and 4-bit codes: every output float equal to the k-means cache's where both run the
// same kernel (4-bit codes, prefill); 8-bit decode sums the stages' histograms instead
// (kernels/attn_cq_nibble.h), equal up to fp32 rounding: 1e-5 of the largest value entry.
TEST(CqCacheResidual, AttendsExactlyAsKMeansWithTheExpandedTables) {
  for (const char* config : {"4c8b", "8c8b", "2c4b"}) {
    for (bool pre : {false, true}) {
      KvShape s = testing::TestShape(8, 2, 32, 1024);
      s.page_tokens = 256;
      CodebookSet res = RandomCodebooks(s, CqConfig::Parse(config), 5,
                                        pre ? KeyPosition::kPreRope : KeyPosition::kPostRope);
      RandomResidualValues(res, 6);
      CodebookSet km = res;
      km.values = ValueKind::kKMeans;
      km.value_basis.clear();
      float vmax = 0;
      for (int l = 0; l < s.n_layers; ++l) {
        for (float x : km.centroids[static_cast<size_t>(l) * 2 + 1])
          vmax = std::max(vmax, std::abs(x));
      }
      auto a = MakeCqCache(res, s, 0, "cq:<residual test>");
      auto b = MakeCqCache(km, s, 0, "cq:<k-means test>");
      ThreadPool pool(2);
      std::mt19937 rng(1);
      std::normal_distribution<float> nd;
      const int kvd = s.kv_dim(), qd = s.q_dim();
      int64_t pos = 0;
      for (int64_t block : {int64_t{600}, int64_t{1}, int64_t{7}}) {
        std::vector<float> k(static_cast<size_t>(block * kvd)), v(k.size()),
            q(static_cast<size_t>(block * qd));
        for (auto* x : {&k, &v, &q}) {
          for (auto& e : *x) e = nd(rng);
        }
        for (KvCache* cache : {a.get(), b.get()}) {
          for (int l = 0; l < s.n_layers; ++l) {
            // Pre- and post-RoPE inputs alike: only equality between the caches matters here.
            const ConstMat km_(k.data(), block, kvd), vm(v.data(), block, kvd);
            cache->Append(l, KvBlock{pos, km_, km_, vm});
          }
        }
        for (int64_t rows : {int64_t{1}, block}) {
          const int64_t q0 = pos + block - rows;
          std::vector<float> oa(static_cast<size_t>(rows * qd)), ob(oa.size());
          const ConstMat qm(q.data() + (block - rows) * qd, rows, qd);
          a->Attend(1, qm, q0, Mat(oa.data(), rows, qd), pool);
          b->Attend(1, qm, q0, Mat(ob.data(), rows, qd), pool);
          if (res.config.bits == 8 && rows == 1) {
            for (size_t i = 0; i < oa.size(); ++i)
              ASSERT_NEAR(oa[i], ob[i], 1e-5f * vmax) << config << " pre=" << pre << " at " << pos;
            continue;
          }
          ASSERT_EQ(std::memcmp(oa.data(), ob.data(), oa.size() * 4), 0)
              << config << " pre=" << pre << " at " << pos << ", " << rows << " queries";
        }
        pos += block;
      }
    }
  }
}

TEST(CqCacheResidual, RefusesStagesForTooFewLayers) {
  const KvShape s = testing::TestShape(8, 2, 32, 64);
  CodebookSet cb = RandomCodebooks(s, CqConfig{4, 8}, 1);
  RandomResidualValues(cb, 2);
  cb.value_basis.pop_back();
  testing::ExpectErrorMentioning([&] { MakeCqCache(cb, s, 0, "cq:<short>"); },
                                 {"cq:<short>", "residual values"});
}

}  // namespace
}  // namespace cqkv
