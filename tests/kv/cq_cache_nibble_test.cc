// The cq cache with residual values (ValueKind::kResidual, 8-bit codes): decode attention goes
// through the nibble kernel (kernels/attn_cq_nibble.h), and must equal the exact kernel of a cache
// whose k-means tables are the same values expanded (A[code >> 4] + B[code & 15]).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kv/cq_cache.h"
#include "kv/cq_cache_testing.h"
#include "kv/kv_testing.h"
#include "quant/codebook.h"
#include "quant/residual_codebook.h"
#include "util/error.h"
#include "util/thread_pool.h"

namespace cqkv {
namespace {

// Same codes (both caches quantise against the same expanded tables), so without :fs the outputs
// differ only by fp32 summation order: 1e-5 relative. With :fs the two kernels rescore different
// candidates (per 256-token block vs per 512-token run), each within the fast-scan bound of the
// exact scores, which is loose for diffuse softmaxes: the query is aimed at one cached key (3 x
// its dequantised key, a lead of ~10 nats over the rest), so both put nearly all weight on it and
// agree to 2e-3; keys or values read at the wrong place would move the output by O(1).
TEST(CqCacheNibble, ResidualDecodeEqualsExpandedTableKernel) {
  for (const char* config : {"8c8b", "4c8b"}) {
    for (int variant = 0; variant < 3; ++variant) {  // post-RoPE, pre-RoPE, post-RoPE :fs
      const bool pre = variant == 1, fs = variant == 2;
      SCOPED_TRACE(std::string(config) + " variant " + std::to_string(variant));
      KvShape s = testing::TestShape(8, 2, 64, 1100);
      s.page_tokens = 256;
      CodebookSet res = RandomCodebooks(s, CqConfig::Parse(config), 3,
                                        pre ? KeyPosition::kPreRope : KeyPosition::kPostRope);
      RandomResidualValues(res, 4);
      ASSERT_EQ(res.value_basis[0].size(),
                static_cast<size_t>(res.n_groups()) * 32 * res.config.channels);
      CodebookSet expanded = res;  // k-means values: the expanded tables alone
      expanded.values = ValueKind::kKMeans;
      expanded.value_basis.clear();
      auto a = MakeCqCache(res, s, 0, "cq:<residual>", fs);
      auto b = MakeCqCache(expanded, s, 0, "cq:<expanded>", fs);
      ThreadPool pool(2);
      std::mt19937 rng(1);
      std::normal_distribution<float> nd;
      const int kvd = s.kv_dim(), qd = s.q_dim(), layer = 1;
      int64_t pos = 0;
      for (int64_t block : {int64_t{1000}, int64_t{1}, int64_t{37}}) {
        std::vector<float> k(static_cast<size_t>(block * kvd)), v(k.size()),
            q(static_cast<size_t>(qd));
        for (auto* x : {&k, &v, &q}) {
          for (auto& e : *x) e = nd(rng);
        }
        if (fs) {
          const int64_t t = block / 2, hd = s.head_dim, group = s.n_heads / s.n_kv_heads;
          const std::vector<float> dk = testing::DequantisedKey(
              res, s, layer, false, pos + t, k.data() + t * kvd, k.data() + t * kvd);
          for (int h = 0; h < s.n_heads; ++h) {
            for (int64_t d = 0; d < hd; ++d) q[h * hd + d] = 3.0f * dk[(h / group) * hd + d];
          }
        }
        for (auto* c : {a.get(), b.get()}) {
          for (int l = 0; l < s.n_layers; ++l) {
            const ConstMat km(k.data(), block, kvd), vm(v.data(), block, kvd);
            c->Append(l, KvBlock{pos, km, km, vm});
          }
        }
        pos += block;
        std::vector<float> oa(static_cast<size_t>(qd)), ob(oa.size());
        a->Attend(layer, ConstMat(q.data(), 1, qd), pos - 1, Mat(oa.data(), 1, qd), pool);
        b->Attend(layer, ConstMat(q.data(), 1, qd), pos - 1, Mat(ob.data(), 1, qd), pool);
        for (int i = 0; i < qd; ++i) {
          ASSERT_NEAR(oa[i], ob[i], (fs ? 2e-3 : 1e-5) * (1 + std::fabs(ob[i])))
              << "decode at " << pos - 1 << " i=" << i;
        }
      }
    }
  }
}

}  // namespace
}  // namespace cqkv
