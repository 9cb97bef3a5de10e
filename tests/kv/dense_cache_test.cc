#include "kv/dense_cache.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kv/kv_testing.h"
#include "util/error.h"
#include "util/fp16.h"

namespace cqkv {
namespace {

struct Case {
  int n_heads, n_kv, hd;
};

class DenseCacheTest : public ::testing::TestWithParam<std::tuple<std::string, Case>> {};

// Appends in blocks of varying size (prefill then decode) and checks every block's attention
// against the naive definition. fp32: 1e-5 relative (fp32 dot products of length hd). fp16: the
// reference uses the fp16-rounded K/V, so the same bound holds.
TEST_P(DenseCacheTest, MatchesNaiveAttention) {
  const auto& [format, cs] = GetParam();
  const KvShape s = testing::TestShape(cs.n_heads, cs.n_kv, cs.hd, 64);
  auto cache = format == "fp32" ? MakeFp32Cache(s) : MakeFp16Cache(s);
  ThreadPool pool(2);
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  std::vector<float> all_k, all_v;
  int64_t pos = 0;
  for (int64_t block : {5, 1, 1, 17, 1, 3}) {
    std::vector<float> k(static_cast<size_t>(block * s.kv_dim())), v(k.size()),
        q(static_cast<size_t>(block * s.q_dim()));
    for (auto& x : k) x = nd(rng);
    for (auto& x : v) x = nd(rng);
    for (auto& x : q) x = nd(rng);
    for (size_t i = 0; i < k.size(); ++i) {
      const bool half = format == "fp16";
      all_k.push_back(half ? F16ToF32(F32ToF16(k[i])) : k[i]);
      all_v.push_back(half ? F16ToF32(F32ToF16(v[i])) : v[i]);
    }
    const ConstMat km(k.data(), block, s.kv_dim()), vm(v.data(), block, s.kv_dim());
    for (int l = 0; l < s.n_layers; ++l) cache->Append(l, KvBlock{pos, km, km, vm});
    std::vector<float> out(q.size());
    cache->Attend(1, ConstMat(q.data(), block, s.q_dim()), pos, Mat(out.data(), block, s.q_dim()),
                  pool);
    const auto ref = testing::NaiveAttention(s, q, block, pos, all_k, all_v);
    for (size_t i = 0; i < out.size(); ++i) {
      ASSERT_NEAR(out[i], ref[i], 1e-5 * (1 + std::fabs(ref[i])))
          << "block at " << pos << " i=" << i;
    }
    pos += block;
  }
  EXPECT_EQ(cache->tokens(0), pos);
  cache->Clear();
  EXPECT_EQ(cache->tokens(1), 0);
}

INSTANTIATE_TEST_SUITE_P(Formats, DenseCacheTest,
                         ::testing::Combine(::testing::Values("fp32", "fp16"),
                                            ::testing::Values(Case{4, 4, 64}, Case{8, 2, 64},
                                                              Case{8, 1, 128}, Case{4, 1, 16})));

TEST(DenseCache, SingleTokenReturnsItsValue) {
  const KvShape s = testing::TestShape(2, 1, 8, 4);
  auto cache = MakeFp32Cache(s);
  std::vector<float> k(8, 0.5f), v{1, 2, 3, 4, 5, 6, 7, 8}, q(16, 3.0f), out(16);
  const ConstMat km(k.data(), 1, 8), vm(v.data(), 1, 8);
  cache->Append(0, KvBlock{0, km, km, vm});
  ThreadPool pool(1);
  cache->Attend(0, ConstMat(q.data(), 1, 16), 0, Mat(out.data(), 1, 16), pool);
  for (int h = 0; h < 2; ++h) {
    for (int c = 0; c < 8; ++c) EXPECT_FLOAT_EQ(out[h * 8 + c], v[c]);
  }
}

TEST(DenseCache, BytesPerTokenAndCapacity) {
  const KvShape s = testing::TestShape(32, 8, 128, 3);  // LLaMA-2-7B-like GQA head layout, 2 layers
  EXPECT_DOUBLE_EQ(MakeFp32Cache(s)->BytesPerToken(), 2.0 * 2 * 8 * 128 * 4);
  EXPECT_DOUBLE_EQ(MakeFp16Cache(s)->BytesPerToken(), 2.0 * 2 * 8 * 128 * 2);
  auto cache = MakeFp16Cache(s);
  std::vector<float> k(4 * s.kv_dim());
  const ConstMat km(k.data(), 4, s.kv_dim());
  EXPECT_THROW(cache->Append(0, KvBlock{0, km, km, km}), Error);
}

TEST(KvCache, SiblingIsAnEmptyCacheOfTheSameFormat) {
  const KvShape s = testing::TestShape(4, 2, 16, 8);
  for (const char* spec : {"fp32", "fp16", "int4-token", "kivi2:g4:r4"}) {
    auto a = MakeKvCache(spec, s);
    std::vector<float> k(3 * s.kv_dim(), 0.5f);
    const ConstMat m(k.data(), 3, s.kv_dim());
    a->Append(0, KvBlock{0, m, m, m});
    auto b = a->NewSibling();
    EXPECT_EQ(b->format(), spec);
    EXPECT_EQ(b->tokens(0), 0) << spec;
    EXPECT_EQ(a->tokens(0), 3) << spec;
    EXPECT_DOUBLE_EQ(b->BytesPerToken(), a->BytesPerToken()) << spec;
  }
}

TEST(KvCache, UnknownFormatIsAClearError) {
  try {
    MakeKvCache("int3-bogus", testing::TestShape(4, 4, 8, 8));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("int3-bogus"), std::string::npos);
  }
}

}  // namespace
}  // namespace cqkv
