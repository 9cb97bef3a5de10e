#include "kv/kivi_cache.h"

#include <gtest/gtest.h>

#include <vector>

#include "kv/quant_cache_testing.h"
#include "kv/quant_rows_testing.h"
#include "util/error.h"
#include "util/fp16.h"

namespace cqkv {
namespace {

using testing::CheckAttentionMatchesDequantised;
using testing::DequantAll;
using testing::ExpectErrorNaming;
using testing::TestShape;

std::vector<float> RoundToHalf(const std::vector<float>& x) {
  std::vector<float> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = F16ToF32(F32ToF16(x[i]));
  return out;
}

// Tokens quantised once n tokens are cached, for group G and window R.
int64_t Quantised(int64_t n, int64_t g, int64_t r) { return n >= r + g ? (n - r) / g * g : 0; }

// Streams tokens in uneven blocks and checks after each block: the window holds the most recent
// tokens exactly (fp16), at least R of them and fewer than R + G; older tokens are KIVI-quantised
// from their fp16 copies -- keys per channel over each G-token group, values per token over each
// G-channel group -- which the row codecs (TestChannelRows / TestTokenRows) fed the same rows
// over whole kv_dim rows reproduce, though the cache codes each KV head in its own page region.
TEST(KiviCache, WindowIsExactAndOlderTokensAreQuantisedPerChannelAndPerToken) {
  const int G = 8, R = 12;
  const KvShape s = TestShape(4, 2, 16, 120);
  auto cache = MakeKiviCache(ParseKvSpec("kivi2:g8:r12"), s);
  testing::RandomKv gen(s, 3);
  std::vector<float> all_k, all_v;
  int64_t n = 0;
  for (int64_t block : {3, 1, 9, 1, 1, 30, 1, 7, 1, 1, 1, 40}) {
    std::vector<float> k, v, q;
    gen.Next(block, k, v, q);
    const ConstMat km(k.data(), block, s.kv_dim()), vm(v.data(), block, s.kv_dim());
    for (int l = 0; l < s.n_layers; ++l) cache->Append(l, KvBlock{n, km, km, vm});
    all_k.insert(all_k.end(), k.begin(), k.end());
    all_v.insert(all_v.end(), v.begin(), v.end());
    n += block;
    ASSERT_EQ(cache->tokens(1), n);

    const int64_t q_n = Quantised(n, G, R);
    if (n >= R) {
      EXPECT_GE(n - q_n, R);
      EXPECT_LT(n - q_n, R + G);
    }
    const auto hk = RoundToHalf(all_k), hv = RoundToHalf(all_v);
    testing::TestChannelRows kref(2, s.kv_dim(), G, q_n);
    testing::TestTokenRows vref(GroupCodec::kUniform, 2, s.kv_dim(), G, q_n);
    kref.Append(ConstMat(hk.data(), q_n, s.kv_dim()));
    for (int64_t t = 0; t < q_n; ++t) vref.Append(hv.data() + t * s.kv_dim());
    const auto dk = DequantAll(*cache, 1, KvPart::kKey), dv = DequantAll(*cache, 1, KvPart::kValue);
    std::vector<float> rk(static_cast<size_t>(s.kv_dim())), rv(rk.size());
    for (int64_t t = 0; t < n; ++t) {
      if (t < q_n) {
        kref.Dequant(t, 0, s.kv_dim(), rk.data());
        vref.Dequant(t, 0, s.kv_dim(), rv.data());
      } else {  // the window: exact to fp16
        std::copy_n(hk.begin() + t * s.kv_dim(), s.kv_dim(), rk.begin());
        std::copy_n(hv.begin() + t * s.kv_dim(), s.kv_dim(), rv.begin());
      }
      for (int c = 0; c < s.kv_dim(); ++c) {
        ASSERT_EQ(dk[t * s.kv_dim() + c], rk[c]) << "n " << n << " token " << t << " ch " << c;
        ASSERT_EQ(dv[t * s.kv_dim() + c], rv[c]) << "n " << n << " token " << t << " ch " << c;
      }
    }
  }
  EXPECT_GT(Quantised(n, G, R), 0);
}

TEST(KiviCache, TokenByTokenEqualsOneBlock) {
  const KvShape s = TestShape(4, 4, 16, 64);
  auto stream = MakeKiviCache(ParseKvSpec("kivi4:g4:r6"), s),
       once = MakeKiviCache(ParseKvSpec("kivi4:g4:r6"), s);
  testing::ExpectStreamingEqualsOneBlock(*stream, *once, 37, 4, /*layer=*/0);
}

struct AttnCase {
  int n_heads, n_kv, hd;
};

class KiviAttentionTest : public ::testing::TestWithParam<std::tuple<std::string, AttnCase>> {};

// Prefill then decode, with lengths crossing the window/group boundaries several times.
TEST_P(KiviAttentionTest, MatchesNaiveAttentionOverDequantisedRows) {
  const auto& [spec, c] = GetParam();
  auto cache = MakeKiviCache(ParseKvSpec(spec), TestShape(c.n_heads, c.n_kv, c.hd, 96));
  CheckAttentionMatchesDequantised(*cache, {5, 1, 1, 17, 1, 14, 1, 3, 20, 1, 1}, 17);
}

INSTANTIATE_TEST_SUITE_P(
    Formats, KiviAttentionTest,
    ::testing::Combine(::testing::Values("kivi1:g16:r8", "kivi2:g16:r16", "kivi4:g32:r0",
                                         "kivi2:g8:r20"),
                       ::testing::Values(AttnCase{4, 4, 64}, AttnCase{8, 2, 64},
                                         AttnCase{4, 4, 128}, AttnCase{8, 2, 128})));

TEST(KiviCache, DefaultsOverLongerContext) {
  auto cache = MakeKiviCache(ParseKvSpec("kivi2"), TestShape(8, 2, 64, 260));
  CheckAttentionMatchesDequantised(*cache, {190, 1, 1, 40, 1}, 18);
}

// LLaMA-7B, kivi2 (G 32, R 128), 4096 tokens: K and V each cost 2 + 32/32 bits per channel once
// quantised, the fp16 window 16. The peak is at 4095 tokens, just before a flush: 3936 quantised
// tokens and 159 in the window.
TEST(KiviCache, BytesPerTokenLlama7b) {
  auto c = MakeKiviCache(ParseKvSpec("kivi2"), testing::Llama7bShape(4096));
  EXPECT_DOUBLE_EQ(c->BitsPerChannel(), 3.0);
  const double quant = 2.0 * 4096 * 3 / 8, window = 2.0 * 4096 * 2;  // per token and layer
  EXPECT_DOUBLE_EQ(c->BytesPerToken(), 32 * (3936 * quant + 159 * window) / 4096);
  // A window longer than the context holds everything in fp16.
  auto all_fp16 = MakeKiviCache(ParseKvSpec("kivi4:r200"), TestShape(4, 4, 64, 100));
  EXPECT_DOUBLE_EQ(all_fp16->BytesPerToken(), 2.0 * 2 * 256 * 2);
  EXPECT_EQ(MakeKvCache("kivi4:g16:r64", TestShape(4, 4, 64, 100))->format(), "kivi4:g16:r64");
}

TEST(KiviCache, BadSpecsNameTheSpec) {
  const KvShape s = TestShape(4, 4, 64, 16);
  for (const char* spec : {"kivi3", "kivi8", "kivi", "kivi2:g0", "kivi2:g48", "kivi2:r-1",
                           "kivi2:x1", "kivi2:g32:g32", "kivi2:r", "kivi2-token"}) {
    ExpectErrorNaming([&] { MakeKvCache(spec, s); }, std::string("'") + spec + "'");
  }
  // The default group of 32 channels does not fit a head of 8.
  ExpectErrorNaming([&] { MakeKvCache("kivi2", TestShape(4, 4, 8, 16)); }, "'kivi2'");
}

}  // namespace
}  // namespace cqkv
