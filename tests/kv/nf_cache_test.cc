#include "kv/nf_cache.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kv/group_quant.h"
#include "kv/quant_cache_testing.h"
#include "util/error.h"

namespace cqkv {
namespace {

using testing::CheckAttentionMatchesDequantised;
using testing::DequantAll;
using testing::ExpectErrorNaming;
using testing::TestShape;

// Phi^-1 by bisection on the normal CDF, in double: slow and obviously right.
double InverseNormalCdf(double p) {
  double lo = -10, hi = 10;
  for (int i = 0; i < 200; ++i) {
    const double mid = 0.5 * (lo + hi);
    (0.5 * std::erfc(-mid / std::sqrt(2.0)) < p ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

// The QLoRA construction documented in group_quant.cc, from scratch.
std::vector<double> DeriveNormalFloat(int bits) {
  const int k = 1 << bits;
  const double offset = 1 - 0.5 * (1.0 / (2 * (k - 1)) + 1.0 / (2 * k));
  auto linspace = [](double a, double b, int n, int i) { return a + (b - a) * i / (n - 1); };
  std::vector<double> v{0.0};
  for (int i = 0; i < k / 2; ++i)
    v.push_back(InverseNormalCdf(linspace(offset, 0.5, k / 2 + 1, i)));
  for (int i = 0; i < k / 2 - 1; ++i) {
    v.push_back(-InverseNormalCdf(linspace(offset, 0.5, k / 2, i)));
  }
  std::sort(v.begin(), v.end());
  const double mx = v.back();
  for (double& x : v) x /= mx;
  return v;
}

TEST(NormalFloat, LevelsAreTheQloraConstruction) {
  for (int bits : {2, 3, 4}) {
    const auto levels = NormalFloatLevels(bits);
    const auto derived = DeriveNormalFloat(bits);
    ASSERT_EQ(levels.size(), derived.size());
    for (size_t i = 0; i < levels.size(); ++i) {
      // NF4 is bitsandbytes' float table, within 2e-7 of exact arithmetic.
      EXPECT_NEAR(levels[i], derived[i], 3e-7) << "nf" << bits << " level " << i;
      if (i > 0) {
        EXPECT_LT(levels[i - 1], levels[i]);
      }
    }
    EXPECT_EQ(levels.front(), -1.0f);
    EXPECT_EQ(levels.back(), 1.0f);
    EXPECT_EQ(levels[levels.size() / 2 - 1], 0.0f);  // an exact zero, below the middle
  }
  // Two published NF4 entries, as bitsandbytes prints them.
  EXPECT_EQ(NormalFloatLevels(4)[1], -0.6961928009986877f);
  EXPECT_EQ(NormalFloatLevels(4)[14], 0.7229568362236023f);
}

// A group of exactly level * absmax, with absmax a power of two present in the group, decodes
// exactly to itself and to the level's own code.
TEST(NormalFloat, LevelValuesRoundTripExactly) {
  for (int bits : {2, 3, 4}) {
    const auto levels = NormalFloatLevels(bits);
    std::vector<float> x;
    for (float l : levels) x.push_back(2.0f * l);
    const NormalFloatGroup q =
        NormalFloatGroup::Fit(x.data(), static_cast<int64_t>(x.size()), 1, bits);
    EXPECT_EQ(q.absmax, 2.0f);
    for (size_t i = 0; i < x.size(); ++i) {
      EXPECT_EQ(q.Encode(x[i]), i);
      EXPECT_EQ(q.Decode(q.Encode(x[i])), x[i]);
    }
  }
}

TEST(NormalFloat, ZeroGroupAndNearestLevel) {
  const std::vector<float> zeros(8, 0.0f);
  const NormalFloatGroup z = NormalFloatGroup::Fit(zeros.data(), 8, 1, 4);
  EXPECT_EQ(z.Decode(z.Encode(0.0f)), 0.0f);
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  for (int bits : {2, 3, 4}) {
    std::vector<float> x(64);
    for (auto& v : x) v = nd(rng);
    const NormalFloatGroup q = NormalFloatGroup::Fit(x.data(), 64, 1, bits);
    const auto levels = NormalFloatLevels(bits);
    for (float v : x) {
      // No level is nearer than the chosen one.
      const float err = std::fabs(q.Decode(q.Encode(v)) - v);
      for (float l : levels) EXPECT_LE(err, std::fabs(l * q.absmax - v) + 1e-6f);
    }
  }
}

TEST(NfCache, GroupsAreScaledPerTokenAndChannelGroup) {
  const KvShape s = TestShape(2, 2, 8, 4);
  auto cache = MakeNfCache("nf3:g4", s);
  const auto l = NormalFloatLevels(3);
  // Four groups with absmax 1, 4, 0.5 and 0 (all zero), each made of levels times absmax.
  const std::vector<float> k{l[0],        l[3], l[5], l[7],        4 * l[2], 4 * l[7], 4 * l[1], 0,
                             0.5f * l[0], 0,    0,    0.5f * l[6], 0,        0,        0,        0};
  const ConstMat km(k.data(), 1, 16);
  for (int layer = 0; layer < 2; ++layer) cache->Append(layer, KvBlock{0, km, km, km});
  EXPECT_EQ(DequantAll(*cache, 1, KvPart::kKey), k);
  EXPECT_EQ(DequantAll(*cache, 0, KvPart::kValue), k);
}

struct AttnCase {
  int n_heads, n_kv, hd;
};

class NfAttentionTest : public ::testing::TestWithParam<std::tuple<std::string, AttnCase>> {};

TEST_P(NfAttentionTest, MatchesNaiveAttentionOverDequantisedRows) {
  const auto& [spec, c] = GetParam();
  auto cache = MakeNfCache(spec, TestShape(c.n_heads, c.n_kv, c.hd, 64));
  CheckAttentionMatchesDequantised(*cache, {5, 1, 1, 17, 1, 3, 20}, 13);
}

INSTANTIATE_TEST_SUITE_P(
    Formats, NfAttentionTest,
    ::testing::Combine(::testing::Values("nf2", "nf3:g32", "nf4", "nf4:g16"),
                       ::testing::Values(AttnCase{4, 4, 64}, AttnCase{8, 2, 64},
                                         AttnCase{4, 4, 128}, AttnCase{8, 2, 128})));

TEST(NfCache, BytesPerTokenLlama7b) {
  const KvShape s = testing::Llama7bShape(4096);
  const double kv = 2.0 * 32 * 4096;
  EXPECT_DOUBLE_EQ(MakeNfCache("nf4", s)->BytesPerToken(), kv * (4 + 16.0 / 128) / 8);
  EXPECT_DOUBLE_EQ(MakeNfCache("nf4:g64", s)->BytesPerToken(), kv * (4 + 0.25) / 8);
  EXPECT_DOUBLE_EQ(MakeNfCache("nf3:g64", s)->BytesPerToken(), kv * (3 + 0.25) / 8);
  EXPECT_DOUBLE_EQ(MakeNfCache("nf2:g32", s)->BytesPerToken(), kv * (2 + 0.5) / 8);
  auto c = MakeNfCache("nf4:g64", s);
  EXPECT_DOUBLE_EQ(c->BitsPerChannel(), 4.25);
  EXPECT_DOUBLE_EQ(StorageBitsPerChannel(*c), 4.25);
  EXPECT_EQ(MakeKvCache("nf3:g64", s)->format(), "nf3:g64");
}

TEST(NfCache, BadSpecsNameTheSpec) {
  const KvShape s = TestShape(4, 4, 64, 16);
  for (const char* spec : {"nf1", "nf5", "nf8", "nf", "nfx", "nf4:g0", "nf4:g48", "nf4:g128",
                           "nf4:r8", "nf4:g16:g16", "nf4-token"}) {
    ExpectErrorNaming([&] { MakeKvCache(spec, s); }, std::string("'") + spec + "'");
  }
}

}  // namespace
}  // namespace cqkv
