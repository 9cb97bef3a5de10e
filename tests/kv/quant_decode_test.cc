// Decode fast path of the quantised baselines (QuantKvCache::AttendPartial through
// DecodeAttention): for one query it must give what the prefill path (CausalAttention over
// DequantHead rows) gives, within fp32 rounding, at every context length, including lengths
// that cross token-group boundaries and KIVI's fp16 window.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "kv/decode_attention.h"
#include "kv/quant_cache.h"
#include "kv/quant_cache_testing.h"
#include "kv/quant_rows_testing.h"
#include "util/thread_pool.h"

namespace cqkv {
namespace {

using testing::RandomKv;
using testing::TestShape;

struct Case {
  std::string spec;
  int n_heads, n_kv, hd;
};

std::string Name(const Case& c) {
  return c.spec + " heads " + std::to_string(c.n_heads) + "/" + std::to_string(c.n_kv) + " hd " +
         std::to_string(c.hd);
}

std::unique_ptr<QuantKvCache> MakeQuant(const std::string& spec, KvShape s) {
  if (spec.ends_with(":g7")) s.page_tokens = 7 * 256;  // token groups must divide the page
  auto cache = MakeKvCache(spec, s);
  auto* quant = dynamic_cast<QuantKvCache*>(cache.get());
  EXPECT_NE(quant, nullptr) << spec;
  cache.release();
  return std::unique_ptr<QuantKvCache>(quant);
}

std::vector<Case> Cases() {
  std::vector<Case> out;
  const std::vector<std::string> specs = {
      "int4-token",   "int2-token:g32",   "int1-token:g16",
      "int4-channel", "int2-channel:g32", "int8-channel:g7" /* groups off the block grid */,
      "nf4",          "nf3:g32",          "kivi2:g32:r64",
      "kivi4:g16:r40"};
  for (const std::string& spec : specs) {
    for (int hd : {64, 128}) {
      out.push_back({spec, 4, 4, hd});  // GQA 1
      out.push_back({spec, 8, 2, hd});  // GQA 4
    }
  }
  return out;
}

// Lengths to check at: both sides of group sizes 7..128, of KIVI windows, and of the decode
// scratch block (64 rows at head_dim 128, 128 at head_dim 64).
bool CheckAt(int64_t n) {
  for (int64_t b : {16, 32, 64, 96, 128, 256}) {
    if (n == b - 1 || n == b || n == b + 1) return true;
  }
  return n <= 3 || n == 150 || n == 300;
}

TEST(QuantDecodeTest, DecodeMatchesPrefillPath) {
  constexpr int64_t kMax = 300;
  ThreadPool pool(3);
  for (const Case& c : Cases()) {
    SCOPED_TRACE(Name(c));
    const KvShape s = TestShape(c.n_heads, c.n_kv, c.hd, kMax, 1);
    auto cache = MakeQuant(c.spec, s);
    ASSERT_NE(cache, nullptr);
    ASSERT_TRUE(cache->HasAttendPartial());
    RandomKv gen(s, 11);
    std::vector<float> k, v, q;
    // A prefill block first (so staged and windowed rows arrive in bulk), then one at a time.
    int64_t n = 0;
    while (n < kMax) {
      const int64_t add = n == 0 ? 20 : 1;
      gen.Next(add, k, v, q);
      const ConstMat km(k.data(), add, s.kv_dim()), vm(v.data(), add, s.kv_dim());
      cache->Append(0, KvBlock{n, km, km, vm});
      n += add;
      if (!CheckAt(n) && n != 20) continue;
      // Two queries at n-2, n-1 take the prefill path; the second row is the reference for the
      // same query alone, which takes the decode path.
      std::vector<float> q2(static_cast<size_t>(2 * s.q_dim()));
      gen.Next(2, k, v, q2);
      std::vector<float> ref(q2.size()), out(static_cast<size_t>(s.q_dim()));
      cache->Attend(0, ConstMat(q2.data(), 2, s.q_dim()), n - 2, Mat(ref.data(), 2, s.q_dim()),
                    pool);
      const ConstMat q1(q2.data() + s.q_dim(), 1, s.q_dim());
      cache->Attend(0, q1, n - 1, Mat(out.data(), 1, s.q_dim()), pool);
      // Small token blocks split groups and scratch blocks across work units; the fixed block
      // makes the result independent of the thread count, bit for bit.
      const DecodeSeq seq{cache.get(), n};
      std::vector<float> split1(out.size()), split3(out.size());
      ThreadPool one(1);
      DecodeOptions opt;
      opt.block_tokens = 37;
      DecodeAttention(std::span(&seq, 1), 0, q1, Mat(split1.data(), 1, s.q_dim()), one, opt);
      DecodeAttention(std::span(&seq, 1), 0, q1, Mat(split3.data(), 1, s.q_dim()), pool, opt);
      for (int64_t i = 0; i < s.q_dim(); ++i) {
        const float r = ref[static_cast<size_t>(s.q_dim() + i)];
        const float tol = 1e-5f * (1.0f + std::fabs(r));
        ASSERT_NEAR(out[i], r, tol) << "n=" << n << " i=" << i;
        ASSERT_NEAR(split1[i], r, tol) << "n=" << n << " i=" << i << " (block 37)";
        ASSERT_EQ(split1[i], split3[i]) << "n=" << n << " i=" << i << " (1 vs 3 threads)";
      }
    }
  }
}

// The decode path also agrees with the naive double-precision attention over the rows
// DequantHead reports, for a long single-token stream through the shared test driver.
TEST(QuantDecodeTest, TokenByTokenMatchesNaive) {
  for (const char* spec : {"int4-channel:g32", "kivi2:g32:r64", "nf4:g32"}) {
    const KvShape s = TestShape(8, 2, 64, 160);
    auto cache = MakeQuant(spec, s);
    ASSERT_NE(cache, nullptr);
    testing::CheckAttentionMatchesDequantised(*cache, std::vector<int64_t>(160, 1), 5);
  }
}

// The block decoders give exactly the values of the row-at-a-time ones, for every packing (whole
// bytes and straddling 3-bit codes), groups inside and across blocks, and partial last groups.
TEST(QuantDecodeTest, DequantBlockEqualsDequant) {
  constexpr int kWidth = 96, kRows = 45;
  RandomKv gen(TestShape(1, 1, kWidth, kRows, 1), 3);
  std::vector<float> k, v, q;
  gen.Next(kRows, k, v, q);
  std::vector<float> block(static_cast<size_t>(kRows * kWidth)), row(kWidth);
  for (int bits : {1, 2, 3, 4, 8}) {
    for (int group : {3, 8, 32}) {
      for (GroupCodec codec : {GroupCodec::kUniform, GroupCodec::kNormalFloat}) {
        if (codec == GroupCodec::kNormalFloat && (bits < 2 || bits > 4)) continue;
        testing::TestTokenRows rows(codec, bits, kWidth, group, kRows);
        for (int t = 0; t < kRows; ++t) rows.Append(k.data() + t * kWidth);
        rows.DequantBlock(3, kRows - 3, group, kWidth - group, block.data(), kWidth);
        for (int t = 3; t < kRows; ++t) {
          rows.Dequant(t, group, kWidth - group, row.data());
          for (int c = 0; c < kWidth - group; ++c) {
            ASSERT_EQ(block[(t - 3) * kWidth + c], row[c]) << bits << " " << group << " " << t;
          }
        }
      }
      testing::TestChannelRows rows(bits, kWidth, group, kRows);
      rows.Append(ConstMat(k.data(), kRows, kWidth));  // 45 rows: the last group is partial
      rows.DequantBlock(5, kRows - 5, 3, 64, block.data(), kWidth);
      for (int t = 5; t < kRows; ++t) {
        rows.Dequant(t, 3, 64, row.data());
        for (int c = 0; c < 64; ++c) {
          ASSERT_EQ(block[(t - 5) * kWidth + c], row[c]) << bits << " " << group << " " << t;
        }
      }
    }
  }
}

}  // namespace
}  // namespace cqkv
