#include "kv/decode_attention.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernels/rope.h"
#include "kv/cq_cache.h"
#include "kv/kv_testing.h"
#include "sanitizer_testing.h"

namespace cqkv {
namespace {

KvShape Shape(int n_heads, int n_kv, int hd, int max_tokens) {
  return testing::TestShape(n_heads, n_kv, hd, max_tokens, /*n_layers=*/1);
}

std::unique_ptr<KvCache> Make(const std::string& spec, const KvShape& s, bool pre, int window) {
  if (spec == "fp32" || spec == "fp16") return MakeKvCache(spec, s);
  const CqConfig cfg = CqConfig::Parse(spec);
  return MakeCqCache(
      RandomCodebooks(s, cfg, 7, pre ? KeyPosition::kPreRope : KeyPosition::kPostRope), s, window,
      "cq:" + spec);
}

// Appends n random tokens (keys ~N(0,1) pre-RoPE, rotated for post-RoPE) in blocks of 512.
void Fill(KvCache& cache, int64_t n, int seed) {
  const KvShape& s = cache.shape();
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  const int kvd = s.kv_dim();
  for (int64_t pos = 0; pos < n;) {
    const int64_t bn = std::min<int64_t>(512, n - pos);
    std::vector<float> kp(static_cast<size_t>(bn * kvd)), k, v(kp.size());
    for (auto& x : kp) x = nd(rng);
    for (auto& x : v) x = nd(rng);
    k = kp;
    for (int64_t i = 0; i < bn; ++i) {
      ApplyRope(k.data() + i * kvd, s.n_kv_heads, s.head_dim, pos + i, s.rope);
    }
    cache.Append(0, KvBlock{pos, ConstMat(kp.data(), bn, kvd), ConstMat(k.data(), bn, kvd),
                            ConstMat(v.data(), bn, kvd)});
    pos += bn;
  }
}

// Queries with scores spread over several units, so the softmax is neither flat nor one-hot.
std::vector<float> Queries(const KvShape& s, int64_t rows, int seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  std::vector<float> q(static_cast<size_t>(rows * s.q_dim()));
  for (auto& x : q) x = nd(rng) * 1.5f;
  return q;
}

// Decode (one query, AttendPartial + merge) against the prefill path of the same cache
// (CausalAttention, which dequantises a row at a time): query rows (x, q) at positions
// (n-2, n-1); row 1 sees exactly what decode sees. Both sum fp32 products of values ~N(0,1)
// in different orders, hence 1e-5 relative to the output scale.
void CheckAgainstPrefill(const std::string& spec, int q_per_kv, int hd, bool pre, int window,
                         int64_t n) {
  const KvShape s = Shape(2 * q_per_kv, 2, hd, static_cast<int>(n));
  auto cache = Make(spec, s, pre, window);
  Fill(*cache, n, 11);
  ThreadPool pool(2);
  const auto q = Queries(s, 2, 5);
  std::vector<float> pre_out(q.size()), dec(static_cast<size_t>(s.q_dim()));
  cache->Attend(0, ConstMat(q.data(), 2, s.q_dim()), n - 2, Mat(pre_out.data(), 2, s.q_dim()),
                pool);
  cache->Attend(0, ConstMat(q.data() + s.q_dim(), 1, s.q_dim()), n - 1,
                Mat(dec.data(), 1, s.q_dim()), pool);
  for (int i = 0; i < s.q_dim(); ++i) {
    const float ref = pre_out[s.q_dim() + i];
    ASSERT_NEAR(dec[i], ref, 1e-5 * (1 + std::fabs(ref)))
        << spec << " g=" << q_per_kv << " hd=" << hd << " pre=" << pre << " r=" << window
        << " n=" << n << " i=" << i;
  }
}

TEST(DecodeAttention, MatchesPrefillPathEveryFormat) {
  // Lengths: one token, within a page, over several pages; 2500 (10 pages) only outside the
  // sanitizer build, where it alone took 2.5 of the suite's 7 minutes and adds no new code path.
  const std::vector<int64_t> lengths = testing::kSanitized
                                           ? std::vector<int64_t>{2, 300, 1100}
                                           : std::vector<int64_t>{2, 300, 1100, 2500};
  for (const char* spec :
       {"fp32", "fp16", "2c8b", "4c8b", "8c8b", "4c4b", "8c4b", "1c1b", "4c5b", "2c3b"}) {
    const bool cq = std::string(spec).find('c') != std::string::npos;
    for (int q_per_kv : {1, 4, 8}) {
      for (int hd : {64, 128}) {
        for (int64_t n : lengths) {
          CheckAgainstPrefill(spec, q_per_kv, hd, false, 0, n);
          if (!cq) continue;
          CheckAgainstPrefill(spec, q_per_kv, hd, true, 0, n);
          CheckAgainstPrefill(spec, q_per_kv, hd, false, 100, n);
        }
      }
    }
  }
}

// A context of 65536 tokens, several times the automatic block, in both key positions. Under the
// sanitizers (46 s there) only the first case keeps 65536 tokens; the others take 9000 (still
// four automatic blocks of 2304 tokens, a partial last one for 4c4b, positions past 8192): the
// same code paths, a seventh of the tokens.
TEST(DecodeAttention, LongContext) {
  const int64_t n = testing::kSanitized ? 9000 : 65536;
  CheckAgainstPrefill("8c8b", 4, 64, false, 32, 65536);
  CheckAgainstPrefill("8c8b", 4, 64, true, 32, n);
  CheckAgainstPrefill("4c4b", 8, 64, false, 0, n - 77);
  CheckAgainstPrefill("fp16", 4, 128, false, 0, n);
}

// With a fixed block size, 1 and 2 threads give identical bits; the automatic block (which
// follows the thread count) agrees to fp32 rounding.
TEST(DecodeAttention, ThreadCountDoesNotChangeTheResult) {
  for (const char* spec : {"fp16", "4c8b", "4c4b"}) {
    const KvShape s = Shape(8, 2, 128, 5000);
    auto cache = Make(spec, s, false, 0);
    Fill(*cache, 5000, 3);
    const auto q = Queries(s, 1, 9);
    std::vector<float> o1(q.size()), o2(q.size()), oa1(q.size()), oa4(q.size());
    const DecodeSeq seq{cache.get(), 5000};
    ThreadPool p1(1), p2(2), p4(4);
    const DecodeOptions fixed{.block_tokens = 768};
    DecodeAttention({&seq, 1}, 0, ConstMat(q.data(), 1, s.q_dim()), Mat(o1.data(), 1, s.q_dim()),
                    p1, fixed);
    DecodeAttention({&seq, 1}, 0, ConstMat(q.data(), 1, s.q_dim()), Mat(o2.data(), 1, s.q_dim()),
                    p2, fixed);
    DecodeAttention({&seq, 1}, 0, ConstMat(q.data(), 1, s.q_dim()), Mat(oa1.data(), 1, s.q_dim()),
                    p1);
    DecodeAttention({&seq, 1}, 0, ConstMat(q.data(), 1, s.q_dim()), Mat(oa4.data(), 1, s.q_dim()),
                    p4);
    for (size_t i = 0; i < q.size(); ++i) {
      ASSERT_EQ(o1[i], o2[i]) << spec << " " << i;
      ASSERT_NEAR(oa1[i], oa4[i], 1e-5 * (1 + std::fabs(oa1[i]))) << spec << " " << i;
      ASSERT_NEAR(o1[i], oa1[i], 1e-5 * (1 + std::fabs(oa1[i]))) << spec << " " << i;
    }
  }
}

// A batch of sequences of different lengths equals each sequence decoded alone.
TEST(DecodeAttention, BatchEqualsSingleSequences) {
  const KvShape s = Shape(8, 2, 64, 3000);
  std::vector<std::unique_ptr<KvCache>> caches;
  std::vector<DecodeSeq> seqs;
  for (int64_t n : {1, 700, 3000}) {
    caches.push_back(Make("8c8b", s, false, 16));
    Fill(*caches.back(), n, static_cast<int>(n));
    seqs.push_back({caches.back().get(), n});
  }
  const auto q = Queries(s, 3, 4);
  std::vector<float> batch(q.size()), single(static_cast<size_t>(s.q_dim()));
  ThreadPool pool(2);
  DecodeAttention(seqs, 0, ConstMat(q.data(), 3, s.q_dim()), Mat(batch.data(), 3, s.q_dim()), pool);
  for (int b = 0; b < 3; ++b) {
    DecodeAttention({&seqs[b], 1}, 0, ConstMat(q.data() + b * s.q_dim(), 1, s.q_dim()),
                    Mat(single.data(), 1, s.q_dim()), pool);
    for (int i = 0; i < s.q_dim(); ++i) {
      ASSERT_NEAR(batch[b * s.q_dim() + i], single[i], 1e-6 * (1 + std::fabs(single[i])));
    }
  }
}

}  // namespace
}  // namespace cqkv
