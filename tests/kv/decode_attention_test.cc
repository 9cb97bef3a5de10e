#include "kv/decode_attention.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernels/attn_dense.h"
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

// Forwards to a real cache and counts the decode calls, to see where the query is prepared.
class CountingCache final : public KvCache {
 public:
  explicit CountingCache(std::unique_ptr<KvCache> inner)
      : KvCache(inner->shape(), nullptr), inner_(std::move(inner)) {}

  std::string format() const override { return inner_->format(); }
  void Append(int layer, const KvBlock& block) override { inner_->Append(layer, block); }
  void Attend(int layer, ConstMat q, int64_t pos0, Mat out, ThreadPool& pool) const override {
    inner_->Attend(layer, q, pos0, out, pool);
  }
  void AttendPartial(int layer, int kv_head, const float* q_group, int group, int64_t t0,
                     int64_t t1, float* m, float* l, float* acc) const override {
    ++raw_units;
    inner_->AttendPartial(layer, kv_head, q_group, group, t0, t1, m, l, acc);
  }
  bool HasAttendPartial() const override { return inner_->HasAttendPartial(); }
  int64_t PreparedQueryFloats(int layer, int group) const override {
    return inner_->PreparedQueryFloats(layer, group);
  }
  void PrepareQuery(int layer, int kv_head, const float* q_group, int group,
                    float* prepared) const override {
    ++prepares;
    inner_->PrepareQuery(layer, kv_head, q_group, group, prepared);
  }
  void AttendPartialPrepared(int layer, int kv_head, const float* prepared, int group, int64_t t0,
                             int64_t t1, float* m, float* l, float* acc) const override {
    ++prepared_units;
    inner_->AttendPartialPrepared(layer, kv_head, prepared, group, t0, t1, m, l, acc);
  }
  int64_t tokens(int layer) const override { return inner_->tokens(layer); }
  void Clear() override { inner_->Clear(); }
  double BytesPerToken() const override { return inner_->BytesPerToken(); }
  std::unique_ptr<KvCache> NewSibling(std::shared_ptr<PagePool> pool) const override {
    return inner_->NewSibling(std::move(pool));
  }
  int64_t PageBytes() const override { return inner_->PageBytes(); }

  mutable std::atomic<int64_t> prepares{0}, prepared_units{0}, raw_units{0};

 private:
  std::unique_ptr<KvCache> inner_;
};

// Decode prepares each sequence's query once per KV head (a rotated format rotates it there), not
// once per (KV head, token block) unit, and gives bitwise what one AttendPartial per unit on the
// raw query gives, merged in block order (what decode computed before the hook). Formats: the
// rotated ones (tq with and without the QJL sketch, :hadamard ints in place and dequantised), a
// split mixed layer (identity) and the identity default (fp16, cq).
TEST(DecodeAttention, PreparesTheQueryOncePerStepAndMatchesPerUnitAttendBitwise) {
  constexpr int64_t kBlock = 256;
  for (const char* spec : {"tq4", "tq3:qjl", "int4-token:hadamard", "int2-channel:g32:hadamard",
                           "K=int4-token:hadamard,V=tq3", "fp16", "cq:4c8b"}) {
    SCOPED_TRACE(spec);
    const KvShape s = Shape(8, 2, 64, 1100);
    std::vector<std::unique_ptr<CountingCache>> caches;
    std::vector<DecodeSeq> seqs;
    int64_t n_units = 0;
    for (int64_t n : {int64_t{1}, int64_t{700}, int64_t{1100}}) {
      caches.push_back(std::make_unique<CountingCache>(std::string(spec).starts_with("cq:")
                                                           ? Make(spec + 3, s, false, 0)
                                                           : MakeKvCache(spec, s)));
      Fill(*caches.back(), n, static_cast<int>(n));
      seqs.push_back({caches.back().get(), n});
      n_units += (n + kBlock - 1) / kBlock * s.n_kv_heads;
    }
    const auto q = Queries(s, 3, 8);
    std::vector<float> out(q.size());
    ThreadPool pool(2);
    DecodeAttention(seqs, 0, ConstMat(q.data(), 3, s.q_dim()), Mat(out.data(), 3, s.q_dim()), pool,
                    DecodeOptions{.block_tokens = kBlock});
    int64_t prepares = 0, prepared_units = 0, raw_units = 0;
    for (const auto& c : caches) {
      prepares += c->prepares;
      prepared_units += c->prepared_units;
      raw_units += c->raw_units;
    }
    EXPECT_EQ(prepares, 3 * s.n_kv_heads);
    EXPECT_EQ(prepared_units, n_units);
    EXPECT_EQ(raw_units, 0);

    const int hd = s.head_dim, group = s.n_heads / s.n_kv_heads;
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
    for (int b = 0; b < 3; ++b) {
      for (int h = 0; h < s.n_kv_heads; ++h) {
        std::vector<float> qg(static_cast<size_t>(group) * hd);
        for (size_t j = 0; j < qg.size(); ++j) qg[j] = q[b * s.q_dim() + h * qg.size() + j] * scale;
        std::vector<float> first(2 * group + qg.size()), next(first.size());
        const AttnState fs{first.data(), first.data() + group, first.data() + 2 * group, group, hd};
        const AttnState ns{next.data(), next.data() + group, next.data() + 2 * group, group, hd};
        for (int64_t t0 = 0; t0 < seqs[b].n_ctx; t0 += kBlock) {
          const int64_t t1 = std::min(seqs[b].n_ctx, t0 + kBlock);
          const AttnState& dst = t0 == 0 ? fs : ns;
          seqs[b].cache->AttendPartial(0, h, qg.data(), group, t0, t1, dst.m, dst.l, dst.acc);
          if (t0 > 0) MergeAttnState(fs, ns);
        }
        for (int g = 0; g < group; ++g) {
          const float inv = 1.0f / fs.l[g];
          for (int j = 0; j < hd; ++j) {
            ASSERT_EQ(out[b * s.q_dim() + (h * group + g) * hd + j], fs.acc[g * hd + j] * inv)
                << "seq " << b << " head " << h * group + g << " channel " << j;
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace cqkv
