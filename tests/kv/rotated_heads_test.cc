// The `:hadamard` integer formats: the per-head rotation, spec parsing, and attention through the
// rotated cache against naive attention over its dequantised rows rotated back.
#include "kv/rotated_heads.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kv/int_cache.h"
#include "kv/kv_spec.h"
#include "kv/quant_cache_testing.h"
#include "util/error.h"
#include "util/thread_pool.h"

namespace cqkv {
namespace {

using testing::DequantAll;
using testing::ExpectErrorNaming;
using testing::RandomKv;
using testing::TestShape;

TEST(HeadRotation, ForwardThenInverseIsIdentityAndKeepsDots) {
  for (uint64_t seed : {uint64_t{0}, uint64_t{42}}) {
    const HeadRotation rot(3, 64, seed);
    EXPECT_EQ(rot.random_signs(), seed != 0);
    std::mt19937 rng(1);
    std::normal_distribution<float> nd;
    std::vector<float> a(128), b(128);  // two heads
    for (auto& x : a) x = nd(rng);
    for (auto& x : b) x = nd(rng);
    auto ra = a, rb = b;
    rot.Forward(2, ra.data(), 2);
    rot.Forward(2, rb.data(), 2);
    double dot = 0, rdot = 0;
    for (int i = 0; i < 64; ++i) {
      dot += double(a[i]) * b[i];
      rdot += double(ra[i]) * rb[i];
    }
    EXPECT_NEAR(rdot, dot, 1e-4 * (1 + std::fabs(dot)));
    rot.Inverse(2, ra.data(), 2);
    for (int i = 0; i < 128; ++i) ASSERT_NEAR(ra[i], a[i], 1e-5);
  }
  // Seeded signs differ by layer.
  const HeadRotation rot(2, 64, 9);
  std::vector<float> x(64, 1.0f), y(64, 1.0f);
  rot.Forward(0, x.data(), 1);
  rot.Forward(1, y.data(), 1);
  EXPECT_NE(x, y);
}

TEST(HadamardSpec, ParsesAsAnOptionOfBothLayouts) {
  const KvSpec a = ParseKvSpec("int4-token:hadamard");
  EXPECT_EQ(a.family, KvFamily::kIntToken);
  EXPECT_TRUE(a.hadamard);
  EXPECT_EQ(a.bits, 4);
  const KvSpec b = ParseKvSpec("int2-channel:hadamard:g64");
  EXPECT_EQ(b.family, KvFamily::kIntChannel);
  EXPECT_TRUE(b.hadamard);
  EXPECT_EQ(b.group, 64);
  const KvSpec c = ParseKvSpec("int2-channel:g32:hadamard");
  EXPECT_TRUE(c.hadamard);
  EXPECT_EQ(c.group, 32);
  EXPECT_FALSE(ParseKvSpec("int4-token").hadamard);
  ExpectErrorNaming([] { ParseKvSpec("int4-token:hadamard:hadamard"); }, "given twice");
  ExpectErrorNaming([] { ParseKvSpec("int4-token:hadamardx"); }, "unknown option");
  ExpectErrorNaming([] { ParseKvSpec("int3-token:hadamard"); }, "'int3-token:hadamard'");
  ExpectErrorNaming([] { ParseKvSpec("nf4:hadamard"); }, "unknown option");
  ExpectErrorNaming([] { MakeKvCache("int4-token:hadamard", TestShape(4, 4, 48, 16)); },
                    "KV format 'int4-token:hadamard'");
  ExpectErrorNaming([] { MakeKvCache("int4-channel:hadamard", TestShape(4, 4, 96, 16)); },
                    "power of two");
}

// Streams prefill blocks and decode steps (one-row blocks go through DecodeAttention and
// AttendPartial, in place through IntAttend where the shape allows) and compares every block's
// output with naive double attention over the cache's stored rows rotated back with R^T. Both
// use the same quantised values; the only differences are fp32 rounding in the dense kernels and
// in the two rotations (each ~log2(hd) fp32 stages), hence 2e-5 relative.
void CheckRotatedAttention(const std::string& spec, const KvShape& s,
                           const std::vector<int64_t>& blocks) {
  SCOPED_TRACE(spec);
  auto cache = MakeIntCache(ParseKvSpec(spec), s);
  ASSERT_NE(cache->rotation(), nullptr);
  RandomKv gen(s, 3);
  ThreadPool pool(2);
  int64_t pos = 0;
  for (int64_t block : blocks) {
    std::vector<float> k, v, q;
    gen.Next(block, k, v, q);
    const ConstMat km(k.data(), block, s.kv_dim()), vm(v.data(), block, s.kv_dim());
    for (int l = 0; l < s.n_layers; ++l) cache->Append(l, KvBlock{pos, km, km, vm});
    std::vector<float> out(q.size());
    cache->Attend(1, ConstMat(q.data(), block, s.q_dim()), pos, Mat(out.data(), block, s.q_dim()),
                  pool);
    auto kd = DequantAll(*cache, 1, KvPart::kKey), vd = DequantAll(*cache, 1, KvPart::kValue);
    for (int64_t t = 0; t < cache->tokens(1); ++t) {
      cache->rotation()->Inverse(1, kd.data() + t * s.kv_dim(), s.n_kv_heads);
      cache->rotation()->Inverse(1, vd.data() + t * s.kv_dim(), s.n_kv_heads);
    }
    const auto ref = testing::NaiveAttention(s, q, block, pos, kd, vd);
    for (size_t i = 0; i < out.size(); ++i) {
      ASSERT_NEAR(out[i], ref[i], 2e-5 * (1 + std::fabs(ref[i]))) << "block at " << pos;
    }
    pos += block;
  }
}

TEST(HadamardIntCache, AttentionEqualsNaiveOverUnrotatedRows) {
  for (const char* spec :
       {"int4-token:hadamard", "int2-token:g16:hadamard", "int4-channel:g32:hadamard",
        "int2-channel:hadamard", "int8-token:hadamard"}) {
    CheckRotatedAttention(spec, TestShape(8, 2, 64, 400), {5, 1, 1, 40, 1, 260, 1, 1});
    CheckRotatedAttention(spec, TestShape(4, 4, 128, 80), {17, 1, 30, 1});
  }
}

// What the rotation is for: a key channel with a large offset (an "outlier channel") sets the
// scale of every per-token group; rotated, its energy spreads over all channels. The keys
// rotated back must be closer to the originals than without rotation, at the same bits.
TEST(HadamardIntCache, RotationSpreadsAnOutlierChannel) {
  const KvShape s = TestShape(4, 4, 64, 64);
  std::mt19937 rng(5);
  std::normal_distribution<float> nd;
  std::vector<float> k(size_t(64) * s.kv_dim());
  for (size_t i = 0; i < k.size(); ++i) k[i] = nd(rng) + (i % 64 == 3 ? 40.0f : 0.0f);
  const ConstMat km(k.data(), 64, s.kv_dim());
  double err[2] = {0, 0};
  int which = 0;
  for (const char* spec : {"int4-token", "int4-token:hadamard"}) {
    auto cache = MakeIntCache(ParseKvSpec(spec), s);
    for (int l = 0; l < s.n_layers; ++l) cache->Append(l, KvBlock{0, km, km, km});
    auto kd = DequantAll(*cache, 0, KvPart::kKey);
    for (int64_t t = 0; t < 64 && cache->rotation(); ++t) {
      cache->rotation()->Inverse(0, kd.data() + t * s.kv_dim(), s.n_kv_heads);
    }
    for (size_t i = 0; i < k.size(); ++i) err[which] += (kd[i] - k[i]) * (kd[i] - k[i]);
    ++which;
  }
  EXPECT_LT(err[1], 0.5 * err[0]) << "plain " << err[0] << " rotated " << err[1];
}

TEST(HadamardIntCache, SameBitsAndSiblingsShareTheRotation) {
  const KvShape s = TestShape(8, 2, 64, 256);
  for (const char* base : {"int4-token", "int2-channel:g32"}) {
    auto plain = MakeKvCache(base, s);
    auto rot = MakeKvCache(std::string(base) + ":hadamard", s);
    EXPECT_DOUBLE_EQ(rot->BitsPerChannel(), plain->BitsPerChannel());
    EXPECT_DOUBLE_EQ(rot->BytesPerToken(), plain->BytesPerToken());
    EXPECT_EQ(rot->PageBytes(), plain->PageBytes());
  }
  auto a = MakeIntCache(ParseKvSpec("int4-token:hadamard"), s);
  auto b = a->NewSibling();
  auto* qb = dynamic_cast<QuantKvCache*>(b.get());
  ASSERT_NE(qb, nullptr);
  EXPECT_EQ(qb->rotation(), a->rotation());
  EXPECT_EQ(b->format(), "int4-token:hadamard");
}

}  // namespace
}  // namespace cqkv

namespace cqkv {
namespace {

// ReadRows (what composites such as K=...,V=... read) gives the model-space rows: the stored
// rows rotated back, and for a mixed spec pairing rotated keys with tq values the attention
// equals naive attention over those rows (same tolerance as above).
TEST(HadamardIntCache, ReadRowsAreInTheModelSpace) {
  const KvShape s = TestShape(8, 2, 64, 300);
  auto cache = MakeIntCache(ParseKvSpec("int4-channel:g32:hadamard"), s);
  RandomKv gen(s, 2);
  std::vector<float> k, v, q;
  gen.Next(280, k, v, q);
  const ConstMat km(k.data(), 280, s.kv_dim()), vm(v.data(), 280, s.kv_dim());
  for (int l = 0; l < s.n_layers; ++l) cache->Append(l, KvBlock{0, km, km, vm});
  auto kd = DequantAll(*cache, 1, KvPart::kKey);
  std::vector<float> rows(size_t(270) * 64);
  cache->ReadRows(1, KvPart::kKey, 5, 270, 1, rows.data());
  for (int64_t t = 0; t < 270; ++t) {
    std::vector<float> want(kd.begin() + (t + 5) * s.kv_dim() + 64,
                            kd.begin() + (t + 5) * s.kv_dim() + 128);
    cache->rotation()->Inverse(1, want.data(), 1);
    for (int c = 0; c < 64; ++c) ASSERT_NEAR(rows[t * 64 + c], want[c], 1e-5) << t;
  }

  auto mixed = MakeKvCache("K=int4-token:hadamard,V=tq3", s);
  ThreadPool pool(2);
  for (int l = 0; l < s.n_layers; ++l) mixed->Append(l, KvBlock{0, km, km, vm});
  std::vector<float> out(size_t(s.q_dim()));
  const ConstMat last(q.data() + 279 * s.q_dim(), 1, s.q_dim());
  mixed->Attend(1, last, 279, Mat(out.data(), 1, s.q_dim()), pool);
  std::vector<float> mk(size_t(280) * s.kv_dim()), mv(mk.size()), row(64 * 280);
  for (int h = 0; h < s.n_kv_heads; ++h) {
    for (KvPart p : {KvPart::kKey, KvPart::kValue}) {
      mixed->ReadRows(1, p, 0, 280, h, row.data());
      auto& dst = p == KvPart::kKey ? mk : mv;
      for (int64_t t = 0; t < 280; ++t) {
        std::copy_n(row.data() + t * 64, 64, dst.data() + t * s.kv_dim() + h * 64);
      }
    }
  }
  const std::vector<float> ql(last.Row(0), last.Row(0) + s.q_dim());
  const auto ref = testing::NaiveAttention(s, ql, 1, 279, mk, mv);
  for (size_t i = 0; i < out.size(); ++i)
    ASSERT_NEAR(out[i], ref[i], 2e-5 * (1 + std::fabs(ref[i])));
}

}  // namespace
}  // namespace cqkv
