// The TurboQuant-style `tq<B>[:qjl]` cache: spec parsing, reconstruction error against the
// Lloyd-Max distortion, attention against naive attention over its dequantised rows, bits.
#include "kv/tq_cache.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kv/kv_spec.h"
#include "kv/quant_cache_testing.h"
#include "kv/tq_lloyd_max.h"
#include "util/error.h"
#include "util/thread_pool.h"

namespace cqkv {
namespace {

using testing::ExpectErrorNaming;
using testing::RandomKv;
using testing::TestShape;

std::unique_ptr<TqCache> MakeTq(const std::string& spec, const KvShape& s) {
  return MakeTqCache(ParseKvSpec(spec), s);
}

std::vector<float> DequantAllTq(const TqCache& c, int layer, bool key) {
  const KvShape& s = c.shape();
  std::vector<float> out(static_cast<size_t>(c.tokens(layer) * s.kv_dim()));
  for (int64_t t = 0; t < c.tokens(layer); ++t) {
    for (int h = 0; h < s.n_kv_heads; ++h) {
      c.DequantHead(layer, key, t, h, out.data() + t * s.kv_dim() + h * s.head_dim);
    }
  }
  return out;
}

TEST(TqSpec, ParsesBitsAndQjl) {
  const KvSpec a = ParseKvSpec("tq3");
  EXPECT_EQ(a.family, KvFamily::kTq);
  EXPECT_EQ(a.bits, 3);
  EXPECT_FALSE(a.qjl);
  const KvSpec b = ParseKvSpec("tq2:qjl");
  EXPECT_EQ(b.bits, 2);
  EXPECT_TRUE(b.qjl);
  ExpectErrorNaming([] { ParseKvSpec("tq5"); }, "'tq5'");
  ExpectErrorNaming([] { ParseKvSpec("tq1"); }, "'tq1'");
  ExpectErrorNaming([] { ParseKvSpec("tq"); }, "'tq'");
  ExpectErrorNaming([] { ParseKvSpec("tq3:qjl:qjl"); }, "given twice");
  ExpectErrorNaming([] { ParseKvSpec("tq3:g64"); }, "unknown option");
  ExpectErrorNaming([] { MakeKvCache("tq3", TestShape(4, 4, 48, 16)); }, "KV format 'tq3'");
  ExpectErrorNaming([] { MakeKvCache("tq4:qjl", TestShape(4, 4, 96, 16)); }, "power of two");
}

// TurboQuant's MSE claim: with the rotation, each coordinate of x/|x| is ~N(0, 1/d), so the
// relative error |x - x'|^2 / |x|^2 is about the N(0,1) Lloyd-Max distortion D_B (0.1175,
// 0.03455, 0.009497 for 2, 3, 4 bits). Measured over 400 Gaussian head rows; bound +-20% (the
// Gaussian approximates the coordinates' exact Beta law at d = 64; fp16 norms add ~1e-7).
// A row concentrated on one channel is the randomized Hadamard's worst case (one sign diagonal,
// not a uniformly random rotation): every rotated coordinate is +-|x|/sqrt(d), i.e. +-1 in N(0,1)
// units, so the relative error is (1 - l*)^2 with l* the level nearest 1 (0.2611, 0.0595, 0.0033
// at 2, 3, 4 bits: 2.2, 1.7 and 0.35 D_B), checked within 10% (the 1% noise on the other channels
// moves the coordinates by ~0.003).
TEST(TqCache, ReconstructionErrorIsTheLloydMaxDistortion) {
  const KvShape s = TestShape(2, 2, 64, 200, 1);
  std::mt19937 rng(4);
  std::normal_distribution<float> nd;
  for (int bits : {2, 3, 4}) {
    for (bool spiky : {false, true}) {
      auto cache = MakeTq("tq" + std::to_string(bits), s);
      std::vector<float> x(size_t(200) * s.kv_dim());
      for (size_t i = 0; i < x.size(); ++i)
        x[i] = spiky ? (i % 64 == 5 ? 30.0f : 0.01f * nd(rng)) : nd(rng);
      const ConstMat m(x.data(), 200, s.kv_dim());
      cache->Append(0, KvBlock{0, m, m, m});
      for (bool key : {true, false}) {
        const auto y = DequantAllTq(*cache, 0, key);
        double rel = 0;
        for (int64_t r = 0; r < 200 * s.n_kv_heads; ++r) {
          double e = 0, n2 = 0;
          for (int c = 0; c < 64; ++c) {
            const double xv = x[r * 64 + c], yv = y[r * 64 + c];
            e += (xv - yv) * (xv - yv);
            n2 += xv * xv;
          }
          rel += e / n2;
        }
        rel /= 200.0 * s.n_kv_heads;
        const double want = LloydMaxGaussian(bits).mse;
        if (spiky) {
          double one = 1e9;
          for (double l : LloydMaxGaussian(bits).levels) one = std::min(one, (1 - l) * (1 - l));
          EXPECT_NEAR(rel, one, 0.1 * one) << "tq" << bits << " spiky, key " << key;
        } else {
          EXPECT_NEAR(rel, want, 0.2 * want) << "tq" << bits << " key " << key;
        }
      }
    }
  }
}

// Prefill blocks and decode steps (through DecodeAttention / AttendPartial) over two pages:
// outputs must equal naive double attention over DequantHead's rows, which for :qjl keys are
// k_mse + |r| sqrt(pi/2)/d S^T z, the vectors whose dot with q is the estimator the kernel sums.
// Same values on both sides; fp32 rounding in the rotations, the sketch projection and the dense
// kernels bounds the difference by ~1e-6 relative, asserted at 3e-5.
TEST(TqCache, AttentionEqualsNaiveOverDequantisedRows) {
  for (const char* spec : {"tq2", "tq3", "tq4", "tq2:qjl", "tq3:qjl", "tq4:qjl"}) {
    for (const KvShape& s : {TestShape(8, 2, 64, 300), TestShape(4, 4, 128, 60)}) {
      SCOPED_TRACE(spec);
      auto cache = MakeTq(spec, s);
      RandomKv gen(s, 9);
      ThreadPool pool(2);
      int64_t pos = 0;
      for (int64_t block : {int64_t{5}, int64_t{1}, int64_t{40}, int64_t{1}, int64_t{1}}) {
        std::vector<float> k, v, q;
        gen.Next(block, k, v, q);
        const ConstMat km(k.data(), block, s.kv_dim()), vm(v.data(), block, s.kv_dim());
        for (int l = 0; l < s.n_layers; ++l) cache->Append(l, KvBlock{pos, km, km, vm});
        std::vector<float> out(q.size());
        cache->Attend(1, ConstMat(q.data(), block, s.q_dim()), pos,
                      Mat(out.data(), block, s.q_dim()), pool);
        const auto ref = testing::NaiveAttention(s, q, block, pos, DequantAllTq(*cache, 1, true),
                                                 DequantAllTq(*cache, 1, false));
        for (size_t i = 0; i < out.size(); ++i) {
          ASSERT_NEAR(out[i], ref[i], 3e-5 * (1 + std::fabs(ref[i]))) << "block at " << pos;
        }
        pos += block;
      }
      if (s.max_tokens == 300) {  // a long prefill crossing the 256-token page
        std::vector<float> k, v, q;
        gen.Next(250, k, v, q);
        const ConstMat km(k.data(), 250, s.kv_dim()), vm(v.data(), 250, s.kv_dim());
        for (int l = 0; l < s.n_layers; ++l) cache->Append(l, KvBlock{pos, km, km, vm});
        std::vector<float> out(s.q_dim());
        const ConstMat last(q.data() + 249 * s.q_dim(), 1, s.q_dim());
        cache->Attend(1, last, pos + 249, Mat(out.data(), 1, s.q_dim()), pool);
        const std::vector<float> ql(last.Row(0), last.Row(0) + s.q_dim());
        const auto ref = testing::NaiveAttention(s, ql, 1, pos + 249, DequantAllTq(*cache, 1, true),
                                                 DequantAllTq(*cache, 1, false));
        for (size_t i = 0; i < out.size(); ++i) {
          ASSERT_NEAR(out[i], ref[i], 3e-5 * (1 + std::fabs(ref[i])));
        }
      }
    }
  }
}

// Bits per channel from the row layout at head_dim 64: codes d*B bits, fp16 norm (16/64 = 0.25
// bit); with :qjl keys (B-1) + 1 sign bit + two fp16 norms (0.5 bit).
TEST(TqCache, BitsAndBytes) {
  const KvShape s = TestShape(8, 2, 64, 512, 4);
  struct Case {
    const char* spec;
    double bits;
  };
  for (const Case& c : {Case{"tq2", 2.25}, Case{"tq3", 3.25}, Case{"tq4", 4.25},
                        Case{"tq3:qjl", (3.5 + 3.25) / 2}, Case{"tq2:qjl", (2.5 + 2.25) / 2}}) {
    auto cache = MakeKvCache(c.spec, s);
    EXPECT_DOUBLE_EQ(cache->BitsPerChannel(), c.bits) << c.spec;
    EXPECT_DOUBLE_EQ(cache->BytesPerToken() * 8 / (2.0 * 4 * 128), c.bits) << c.spec;
    EXPECT_GE(cache->PageBytes() * 8.0, c.bits * 2 * 4 * 128 * 256) << c.spec;
    EXPECT_EQ(cache->format(), c.spec);
  }
  EXPECT_GT(MakeKvCache("tq3:qjl", s)->SharedBytes(), MakeKvCache("tq3", s)->SharedBytes());
}

// Siblings share the rotation and sketch: the same rows give the same codes; Clear empties.
TEST(TqCache, SiblingsCodeAlikeAndClearEmpties) {
  const KvShape s = TestShape(4, 2, 64, 32);
  auto a = MakeTq("tq3:qjl", s);
  auto b = a->NewSibling();
  auto* tb = dynamic_cast<TqCache*>(b.get());
  ASSERT_NE(tb, nullptr);
  RandomKv gen(s, 1);
  std::vector<float> k, v, q;
  gen.Next(10, k, v, q);
  const ConstMat km(k.data(), 10, s.kv_dim()), vm(v.data(), 10, s.kv_dim());
  for (int l = 0; l < s.n_layers; ++l) {
    a->Append(l, KvBlock{0, km, km, vm});
    tb->Append(l, KvBlock{0, km, km, vm});
  }
  EXPECT_EQ(DequantAllTq(*a, 1, true), DequantAllTq(*tb, 1, true));
  EXPECT_EQ(DequantAllTq(*a, 1, false), DequantAllTq(*tb, 1, false));
  a->Clear();
  EXPECT_EQ(a->tokens(0), 0);
  ExpectErrorNaming([&] { a->Append(0, KvBlock{3, km, km, vm}); }, "expected position 0");
}

}  // namespace
}  // namespace cqkv
