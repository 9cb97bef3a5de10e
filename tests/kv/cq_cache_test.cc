#include "kv/cq_cache.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "kernels/rope.h"
#include "kv/cq_cache_testing.h"
#include "kv/kv_testing.h"
#include "quant/kmeans.h"
#include "sanitizer_testing.h"
#include "test_util.h"
#include "util/error.h"
#include "util/fp16.h"

namespace cqkv {
namespace {

KvShape Shape(int n_heads, int n_kv, int hd, int max_tokens) {
  KvShape s = testing::TestShape(n_heads, n_kv, hd, max_tokens);
  s.rope.freq_base = 100.0f;  // low base: every channel pair turns noticeably in 32 positions
  // Llama-3.1-style factors and linear scaling: pre-RoPE codebooks rotate cached keys with the
  // shape's RopeParams, which the references below apply through ApplyRope.
  s.rope.freq_scale = 0.75f;
  for (int i = 0; i < hd / 2; ++i) s.rope.freq_factors.push_back(1.0f + static_cast<float>(i % 3));
  s.model_fingerprint = 0xabcdef;
  return s;
}

using testing::Dequantise;
using testing::DequantisedKey;

struct Case {
  const char* config;
  int hd;
};

class CqCacheTest
    : public ::testing::TestWithParam<std::tuple<Case, int /*q per kv*/, bool /*pre*/, int>> {};

// Appends blocks of varying size (prefill, then decode) to every layer and checks each block's
// attention in layer 1 against dequantise-then-attend in double. Window tokens use their fp16
// post-RoPE K and V. The cache sums fp32 products over one head, hence 1e-5 relative.
TEST_P(CqCacheTest, MatchesDequantisedReference) {
  const auto& [cs, q_per_kv, pre, window] = GetParam();
  const KvShape s = Shape(2 * q_per_kv, 2, cs.hd, 32);
  const CqConfig cfg = CqConfig::Parse(cs.config);
  const CodebookSet cb =
      RandomCodebooks(s, cfg, 21, pre ? KeyPosition::kPreRope : KeyPosition::kPostRope);
  auto cache = MakeCqCache(cb, s, window, "cq:<test>");
  ThreadPool pool(2);
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  const int layer = 1, kvd = s.kv_dim();
  // Per token: dequantised K (post-RoPE) and V, and the fp16-rounded originals.
  std::vector<std::vector<float>> deq_k, deq_v, win_k, win_v;
  int64_t pos = 0;
  for (int64_t block : {5, 1, 1, 9, 1, 3}) {
    std::vector<float> k_pre(static_cast<size_t>(block * kvd)), k(k_pre.size()), v(k_pre.size()),
        q(static_cast<size_t>(block * s.q_dim()));
    for (auto& x : k_pre) x = nd(rng);
    for (auto& x : v) x = nd(rng);
    for (auto& x : q) x = nd(rng);
    k = k_pre;
    for (int64_t i = 0; i < block; ++i) {
      ApplyRope(k.data() + i * kvd, s.n_kv_heads, s.head_dim, pos + i, s.rope);
      deq_k.push_back(
          DequantisedKey(cb, s, layer, pre, pos + i, k_pre.data() + i * kvd, k.data() + i * kvd));
      deq_v.push_back(Dequantise(cb, layer, 1, v.data() + i * kvd));
      std::vector<float> wk(kvd), wv(kvd);
      for (int c = 0; c < kvd; ++c) {
        wk[c] = F16ToF32(F32ToF16(k[i * kvd + c]));
        wv[c] = F16ToF32(F32ToF16(v[i * kvd + c]));
      }
      win_k.push_back(wk);
      win_v.push_back(wv);
    }
    const ConstMat kp(k_pre.data(), block, kvd), km(k.data(), block, kvd), vm(v.data(), block, kvd);
    for (int l = 0; l < s.n_layers; ++l) cache->Append(l, KvBlock{pos, kp, km, vm});
    pos += block;
    // The last `window` tokens of the cache are read at full precision.
    std::vector<std::vector<float>> ref_k = deq_k, ref_v = deq_v;
    for (int64_t t = std::max<int64_t>(0, pos - window); t < pos; ++t) {
      ref_k[t] = win_k[t];
      ref_v[t] = win_v[t];
    }
    const int64_t pos0 = pos - block;
    std::vector<float> out(q.size());
    cache->Attend(layer, ConstMat(q.data(), block, s.q_dim()), pos0,
                  Mat(out.data(), block, s.q_dim()), pool);
    std::vector<float> flat_k, flat_v;  // (pos, kv_dim) rows as the naive attention takes them
    for (int64_t t = 0; t < pos; ++t) {
      flat_k.insert(flat_k.end(), ref_k[t].begin(), ref_k[t].end());
      flat_v.insert(flat_v.end(), ref_v[t].begin(), ref_v[t].end());
    }
    const auto ref = testing::NaiveAttention(s, q, block, pos0, flat_k, flat_v);
    for (size_t i = 0; i < out.size(); ++i) {
      ASSERT_NEAR(out[i], ref[i], 1e-5 * (1 + std::fabs(ref[i])))
          << "block at " << pos0 << " i=" << i;
    }
  }
  EXPECT_EQ(cache->tokens(0), pos);
  cache->Clear();
  EXPECT_EQ(cache->tokens(1), 0);
}

INSTANTIATE_TEST_SUITE_P(Configs, CqCacheTest,
                         ::testing::Combine(::testing::Values(Case{"2c8b", 16}, Case{"4c8b", 16},
                                                              Case{"8c8b", 16}, Case{"4c4b", 16},
                                                              Case{"8c4b", 16}, Case{"1c1b", 16},
                                                              Case{"3c5b", 12}, Case{"2c16b", 8}),
                                            ::testing::Values(1, 2, 4), ::testing::Bool(),
                                            ::testing::Values(0, 6)));

// One cached token whose every group is exactly a centroid: it must be encoded to that index
// and decoded to exactly those values, so attention (one key: weight 1) returns V exactly.
TEST(CqCache, TokenOnACentroidDecodesExactly) {
  for (const char* config : {"4c8b", "4c4b", "3c5b", "1c1b"}) {
    for (bool pre : {false, true}) {
      const CqConfig cfg = CqConfig::Parse(config);
      const KvShape s = Shape(4, 2, cfg.channels * 4, 4);
      const CodebookSet cb =
          RandomCodebooks(s, cfg, 5, pre ? KeyPosition::kPreRope : KeyPosition::kPostRope);
      auto cache = MakeCqCache(cb, s, 0, "cq:<test>");
      std::vector<float> k(s.kv_dim()), v(s.kv_dim()), q(s.q_dim(), 0.5f), out(s.q_dim());
      const int c = cfg.channels;
      for (int g = 0; g < cb.n_groups(); ++g) {
        const int code = (g * 37 + 11) % cfg.n_centroids();
        std::copy_n(cb.Table(0, 0, g) + code * c, c, k.begin() + g * c);
        std::copy_n(cb.Table(0, 1, g) + code * c, c, v.begin() + g * c);
      }
      const ConstMat km(k.data(), 1, s.kv_dim()), vm(v.data(), 1, s.kv_dim());
      cache->Append(0, KvBlock{0, km, km, vm});
      ThreadPool pool(1);
      cache->Attend(0, ConstMat(q.data(), 1, s.q_dim()), 0, Mat(out.data(), 1, s.q_dim()), pool);
      for (int h = 0; h < s.n_heads; ++h) {
        const int kvh = h / 2;
        for (int d = 0; d < s.head_dim; ++d) {
          ASSERT_EQ(out[h * s.head_dim + d], v[kvh * s.head_dim + d]) << config << " " << h;
        }
      }
    }
  }
}

// A window as large as the context keeps everything in fp16: attention is the fp16 cache's.
TEST(CqCache, WindowCoveringTheContextIsFp16) {
  const KvShape s = Shape(4, 2, 16, 8);
  auto cq = MakeCqCache(RandomCodebooks(s, CqConfig{4, 2}, 1), s, 100, "cq:<test>:r100");
  auto fp16 = MakeKvCache("fp16", s);
  std::mt19937 rng(2);
  std::normal_distribution<float> nd;
  std::vector<float> k(8 * s.kv_dim()), v(k.size()), q(8 * s.q_dim()), a(q.size()), b(q.size());
  for (auto* vec : {&k, &v, &q}) {
    for (auto& x : *vec) x = nd(rng);
  }
  const ConstMat km(k.data(), 8, s.kv_dim()), vm(v.data(), 8, s.kv_dim());
  cq->Append(0, KvBlock{0, km, km, vm});
  fp16->Append(0, KvBlock{0, km, km, vm});
  ThreadPool pool(2);
  cq->Attend(0, ConstMat(q.data(), 8, s.q_dim()), 0, Mat(a.data(), 8, s.q_dim()), pool);
  fp16->Attend(0, ConstMat(q.data(), 8, s.q_dim()), 0, Mat(b.data(), 8, s.q_dim()), pool);
  EXPECT_EQ(a, b);
  EXPECT_DOUBLE_EQ(cq->BytesPerToken(), CqBytesPerToken(CqConfig{4, 2}, s, 8).total());
}

TEST(CqCache, BytesPerTokenIsCodeBitsPlusAmortisedTables) {
  // LLaMA-7B: 32 layers, 32 KV heads of 128 channels, 4096-token context.
  KvShape llama;
  llama.n_layers = 32;
  llama.n_heads = 32;
  llama.n_kv_heads = 32;
  llama.head_dim = 128;
  llama.max_tokens = 4096;
  const CqConfig c8b8{8, 8};
  EXPECT_EQ(CqCodeBitsPerChannel(c8b8), 1.0);
  const CqBytes b = CqBytesPerToken(c8b8, llama, 0);
  EXPECT_EQ(b.codes, 2.0 * 32 * 4096 / 8);  // exactly 1 bit per channel
  EXPECT_EQ(b.tables, 2.0 * 32 * 512 * 256 * 8 * 4 / 4096);
  EXPECT_EQ(b.window, 0.0);
  const CqBytes w = CqBytesPerToken(CqConfig{4, 8}, llama, 128);
  EXPECT_EQ(w.codes, 2.0 * 32 * 4096 * 2 / 8);
  EXPECT_EQ(w.window, 128.0 * 2 * 32 * 4096 * 2 / 4096);
  EXPECT_EQ(CqCodeBitsPerChannel(CqConfig{3, 5}), 5.0 / 3.0);

  const KvShape s = Shape(4, 2, 24, 64);
  const CqConfig c3b5{3, 5};
  auto cache = MakeCqCache(RandomCodebooks(s, c3b5, 1), s, 16, "cq:x");
  const double n_groups = 48.0 / 3;
  EXPECT_DOUBLE_EQ(
      cache->BytesPerToken(),
      2 * 2 * n_groups * 5 / 8 + 2 * 2 * n_groups * 32 * 3 * 4 / 64.0 + 16 * 2 * 2 * 48 * 2 / 64.0);
  EXPECT_DOUBLE_EQ(cache->BitsPerChannel(), 5.0 / 3.0);
}

// A sibling starts empty, shares the codebooks and, fed the same tokens, attends bit-identically
// to its origin (pre-RoPE keys and a window exercise the shared rotation table too). The origin's
// tokens stay its own.
TEST(CqCache, SiblingSharesCodebooksNotTokens) {
  const KvShape s = Shape(4, 2, 32, 24);
  auto a = MakeCqCache(RandomCodebooks(s, CqConfig{4, 8}, 4, KeyPosition::kPreRope), s, 4,
                       "cq:<test>:r4");
  std::mt19937 rng(8);
  std::normal_distribution<float> nd;
  const int n = 20, kvd = s.kv_dim();
  std::vector<float> k(n * kvd), v(n * kvd), q(s.q_dim());
  for (auto* x : {&k, &v, &q})
    for (float& e : *x) e = nd(rng);
  KvBlock block{0, ConstMat(k.data(), n, kvd), ConstMat(k.data(), n, kvd),
                ConstMat(v.data(), n, kvd)};
  for (int l = 0; l < s.n_layers; ++l) a->Append(l, block);
  auto b = a->NewSibling();
  EXPECT_EQ(b->format(), a->format());
  EXPECT_EQ(b->tokens(0), 0);
  EXPECT_EQ(a->tokens(0), n);
  for (int l = 0; l < s.n_layers; ++l) b->Append(l, block);
  ThreadPool pool(2);
  std::vector<float> oa(s.q_dim()), ob(s.q_dim());
  a->Attend(1, ConstMat(q.data(), 1, s.q_dim()), n - 1, Mat(oa.data(), 1, s.q_dim()), pool);
  b->Attend(1, ConstMat(q.data(), 1, s.q_dim()), n - 1, Mat(ob.data(), 1, s.q_dim()), pool);
  EXPECT_EQ(oa, ob);
  EXPECT_DOUBLE_EQ(b->BytesPerToken(), a->BytesPerToken());
}

struct PagedCase {
  const char* config;
  bool pre;
  int window;
};

class CqPagedTest : public ::testing::TestWithParam<PagedCase> {};

// The same tokens in pages of 256 and 1024 tokens and in one page holding the whole context:
// decode (one query through DecodeAttention; AttendPartial over ranges spanning 3+ pages, from
// odd starts, long enough for 4-bit pairs) and prefill (a block of queries, every page read
// through the row accessors) agree within 1e-6 relative.
TEST_P(CqPagedTest, PageSizeDoesNotChangeAttention) {
  const PagedCase& pc = GetParam();
  const int n_ctx = 1400, n_pre = 40;
  const KvShape base = Shape(8, 2, 128, n_ctx);
  const int kvd = base.kv_dim(), qd = base.q_dim(), hd = base.head_dim, group = 4;
  const CodebookSet cb = RandomCodebooks(base, CqConfig::Parse(pc.config), 31,
                                         pc.pre ? KeyPosition::kPreRope : KeyPosition::kPostRope);
  std::mt19937 rng(5);
  std::normal_distribution<float> nd;
  std::vector<float> k_pre(static_cast<size_t>(n_ctx) * kvd), k, v(k_pre.size()),
      q(static_cast<size_t>(n_pre) * qd);
  for (auto* x : {&k_pre, &v}) {
    for (float& e : *x) e = nd(rng);
  }
  for (float& e : q) e = nd(rng) * 3.0f;
  k = k_pre;
  for (int t = 0; t < n_ctx; ++t) {
    ApplyRope(k.data() + int64_t{t} * kvd, base.n_kv_heads, hd, t, base.rope);
  }
  const std::pair<int64_t, int64_t> ranges[] = {{301, 1100}, {0, n_ctx}, {513, n_ctx}, {7, 9}};
  std::vector<std::vector<float>> results;
  for (int page_tokens : {256, 1024, 1536}) {
    KvShape s = base;
    s.page_tokens = page_tokens;
    auto cache = MakeCqCache(cb, s, pc.window, "cq:<test>");
    int64_t pos = 0;
    for (int64_t n : {700, 1, 300, 13, 386}) {
      const KvBlock block{pos, ConstMat(k_pre.data() + pos * kvd, n, kvd),
                          ConstMat(k.data() + pos * kvd, n, kvd),
                          ConstMat(v.data() + pos * kvd, n, kvd)};
      for (int l = 0; l < s.n_layers; ++l) cache->Append(l, block);
      pos += n;
    }
    ASSERT_EQ(pos, n_ctx);
    EXPECT_EQ(cache->pages_held(), (n_ctx + page_tokens - 1) / page_tokens);
    ThreadPool pool(2);
    std::vector<float> r(static_cast<size_t>(n_pre + 1) * qd);
    cache->Attend(1, ConstMat(q.data(), 1, qd), n_ctx - 1, Mat(r.data(), 1, qd), pool);
    cache->Attend(1, ConstMat(q.data(), n_pre, qd), n_ctx - n_pre, Mat(r.data() + qd, n_pre, qd),
                  pool);
    std::vector<float> qs(q.begin(), q.begin() + qd);
    for (float& e : qs) e /= std::sqrt(static_cast<float>(hd));
    for (auto [t0, t1] : ranges) {
      for (int kvh = 0; kvh < s.n_kv_heads; ++kvh) {
        std::vector<float> m(group), l(group), acc(static_cast<size_t>(group) * hd);
        cache->AttendPartial(1, kvh, qs.data() + kvh * group * hd, group, t0, t1, m.data(),
                             l.data(), acc.data());
        for (auto* x : {&m, &l, &acc}) r.insert(r.end(), x->begin(), x->end());
      }
    }
    results.push_back(std::move(r));
  }
  for (size_t p = 1; p < results.size(); ++p) {
    ASSERT_EQ(results[p].size(), results[0].size());
    for (size_t i = 0; i < results[0].size(); ++i) {
      ASSERT_NEAR(results[p][i], results[0][i], 1e-6 * std::fabs(results[0][i]) + 1e-12)
          << pc.config << " page size #" << p << " value " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Configs, CqPagedTest,
                         ::testing::Values(PagedCase{"8c8b", false, 0}, PagedCase{"4c8b", false, 0},
                                           PagedCase{"4c4b", false, 0}, PagedCase{"2c4b", false, 0},
                                           PagedCase{"4c8b", true, 0}, PagedCase{"8c8b", false, 32},
                                           PagedCase{"4c4b", true, 32}));

// Page sizes: per (layer, K/V, KV head) the packed codes of the page's tokens, 64-byte aligned,
// plus 4 spare bytes for widths read as words; the window is per sequence.
TEST(CqCache, PageBytesAndFixedBytes) {
  const KvShape s = Shape(4, 2, 24, 64);
  auto c3b5 = MakeCqCache(RandomCodebooks(s, CqConfig{3, 5}, 1), s, 16, "cq:x:r16");
  // 256 tokens x 8 groups x 5 bits = 1280 bytes, + 4 spare = 1284, rounded up to 1344.
  EXPECT_EQ(c3b5->PageBytes(), 2 * 2 * 2 * 1344);
  EXPECT_EQ(c3b5->FixedBytes(), 2 * 2 * 16 * 48 * 2);  // layers x K/V x slots x kv_dim x fp16
  KvShape big = Shape(8, 2, 128, 4096);
  big.page_tokens = 512;
  auto c8b8 = MakeCqCache(RandomCodebooks(big, CqConfig{8, 8}, 1), big, 0, "cq:x");
  EXPECT_EQ(c8b8->PageBytes(), 2 * 2 * 2 * 512 * 16);  // exactly 1 byte per group, no spare
  EXPECT_EQ(c8b8->FixedBytes(), 0);
  EXPECT_DOUBLE_EQ(c8b8->BitsPerChannel(), 1.0);
  // Shared tables: 2 layers x K/V x 32 groups (2 heads x 16) x 256 centroids x 8 channels of
  // fp32, once for every sibling; no rotation table for post-RoPE keys.
  EXPECT_EQ(c8b8->SharedBytes(), 2 * 2 * 32 * 256 * 8 * 4);
  EXPECT_EQ(c8b8->NewSibling()->SharedBytes(), c8b8->SharedBytes());
}

// Caches on one pool hold PagesFor(tokens) pages each, return them on Clear and destruction,
// share the codebooks (same tokens, same attention) and never each other's pages.
TEST(CqCache, PagesComeFromAndReturnToASharedPool) {
  const KvShape s = Shape(8, 2, 128, 2048);
  auto origin = MakeCqCache(RandomCodebooks(s, CqConfig{8, 8}, 3), s, 0, "cq:<test>");
  auto pool = std::make_shared<PagePool>(origin->PageBytes(), 6 * origin->PageBytes());
  EXPECT_THROW(origin->NewSibling(std::make_shared<PagePool>(123, 1000)), Error);
  auto a = origin->NewSibling(pool), b = origin->NewSibling(pool);
  EXPECT_EQ(a->pool(), pool);
  std::mt19937 rng(11);
  std::normal_distribution<float> nd;
  const int kvd = s.kv_dim(), qd = s.q_dim();
  std::vector<float> x(static_cast<size_t>(1200) * kvd), y(x.size()), q(qd);
  for (auto* vec : {&x, &y, &q}) {
    for (float& e : *vec) e = nd(rng);
  }
  auto append = [&](KvCache& c, const std::vector<float>& src, int64_t t0, int64_t n) {
    const ConstMat m(src.data() + t0 * kvd, n, kvd);
    for (int l = 0; l < s.n_layers; ++l) c.Append(l, KvBlock{t0, m, m, m});
  };
  ThreadPool tp(2);
  auto decode = [&](const KvCache& c, int64_t pos) {
    std::vector<float> out(qd);
    c.Attend(1, ConstMat(q.data(), 1, qd), pos, Mat(out.data(), 1, qd), tp);
    return out;
  };
  append(*a, x, 0, 600);
  EXPECT_EQ(a->pages_held(), a->PagesFor(600));
  EXPECT_EQ(pool->used(), 3);
  append(*b, x, 0, 300);
  EXPECT_EQ(pool->used(), 5);
  const std::vector<float> ob = decode(*b, 299);
  EXPECT_EQ(decode(*a, 299), ob);  // one set of codebooks
  a->Clear();
  EXPECT_EQ(a->tokens(0), 0);
  EXPECT_EQ(a->pages_held(), 0);
  EXPECT_EQ(pool->used(), 2);
  append(*a, y, 0, 600);  // reuses the freed pages (zeroed again), b's stay untouched
  EXPECT_EQ(pool->used(), 5);
  EXPECT_EQ(decode(*b, 299), ob);
  // The budget: one page left; b at 900 tokens would need two more.
  append(*b, x, 300, 300);
  EXPECT_EQ(pool->used(), 6);
  EXPECT_FALSE(b->TryReserve(900));
  EXPECT_EQ(b->pages_held(), 3);
  try {
    append(*b, x, 600, 300);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kResourceExhausted) << e.what();
  }
  EXPECT_EQ(b->tokens(0), 600);
  EXPECT_EQ(decode(*b, 299), ob);
  b.reset();
  EXPECT_EQ(pool->used(), 3);
  a.reset();
  EXPECT_EQ(pool->used(), 0);
}

TEST(CqCache, SpecParsing) {
  EXPECT_EQ(ParseCqSpec("cq:/a/b.cqcb").path, "/a/b.cqcb");
  EXPECT_EQ(ParseCqSpec("cq:/a/b.cqcb").window, 0);
  const CqSpec r = ParseCqSpec("cq:/a/b.cqcb:r32");
  EXPECT_EQ(r.path, "/a/b.cqcb");
  EXPECT_EQ(r.window, 32);
  EXPECT_EQ(ParseCqSpec("cq:x:rab").path, "x:rab");
  EXPECT_THROW(ParseCqSpec("cq:"), Error);
  EXPECT_THROW(ParseCqSpec("cq::r4"), Error);
  EXPECT_FALSE(r.fast_scan);
  for (const char* spec : {"cq:/a/b.cqcb:fs:r32", "cq:/a/b.cqcb:r32:fs"}) {
    const CqSpec f = ParseCqSpec(spec);
    EXPECT_EQ(f.path, "/a/b.cqcb") << spec;
    EXPECT_EQ(f.window, 32) << spec;
    EXPECT_TRUE(f.fast_scan) << spec;
  }
  EXPECT_EQ(ParseCqSpec("cq:x:fs:fs").path, "x:fs");
  EXPECT_EQ(ParseCqSpec("cq:x:fsx").path, "x:fsx");
  EXPECT_THROW(ParseCqSpec("cq::fs"), Error);
}

// The fast-scan option against the plain layout on the same tokens, pages of 256 and 1024: prefill
// (exact scores through the row accessors) agrees within 1e-6 relative, so every key code is
// stored and read back where the layout says; decode ranges (approximate key scores) agree within
// the kernel's stated bound tanh(E / 2) * (max v - min v) + 1e-5 (kernels/attn_cq_fastscan.h),
// with E = groups * scale / 2 computed here from the codebooks for each query head. Every
// (page size, window) pair; under the sanitizers (26 s there) each page size with one of the
// windows, so every config still meets both page sizes and both windows in half the runs.
TEST(CqCache, FastScanKeysMatchPlainLayoutWithinBound) {
  const int n_ctx = 1100, n_pre = 8, group = 4, layer = 1;
  const std::vector<std::pair<int, int>> layouts =  // (page tokens, window)
      testing::kSanitized
          ? std::vector<std::pair<int, int>>{{256, 32}, {1024, 0}}
          : std::vector<std::pair<int, int>>{{256, 0}, {256, 32}, {1024, 0}, {1024, 32}};
  for (const char* config : {"8c8b", "4c8b", "4c4b", "8c4b"}) {
    for (const auto& [page_tokens, window] : layouts) {
      SCOPED_TRACE(::testing::Message() << config << " page " << page_tokens << " r" << window);
      KvShape s = Shape(8, 2, 128, n_ctx);
      s.page_tokens = page_tokens;
      const int kvd = s.kv_dim(), qd = s.q_dim(), hd = s.head_dim;
      const CqConfig cfg = CqConfig::Parse(config);
      const CodebookSet cb = RandomCodebooks(s, cfg, 41);
      auto plain = MakeCqCache(cb, s, window, "cq:<test>");
      auto fast = MakeCqCache(cb, s, window, "cq:<test>:fs", true);
      std::mt19937 rng(9);
      std::normal_distribution<float> nd;
      std::vector<float> k(static_cast<size_t>(n_ctx) * kvd), v(k.size()),
          q(static_cast<size_t>(n_pre) * qd);
      for (auto* x : {&k, &v, &q}) {
        for (float& e : *x) e = nd(rng);
      }
      int64_t pos = 0;
      for (int64_t n : {500, 1, 63, 536}) {
        const ConstMat km(k.data() + pos * kvd, n, kvd), vm(v.data() + pos * kvd, n, kvd);
        for (int l = 0; l < s.n_layers; ++l) {
          plain->Append(l, KvBlock{pos, km, km, vm});
          fast->Append(l, KvBlock{pos, km, km, vm});
        }
        pos += n;
      }
      ThreadPool pool(2);
      std::vector<float> a(q.size()), b(q.size());
      plain->Attend(layer, ConstMat(q.data(), n_pre, qd), n_ctx - n_pre, Mat(a.data(), n_pre, qd),
                    pool);
      fast->Attend(layer, ConstMat(q.data(), n_pre, qd), n_ctx - n_pre, Mat(b.data(), n_pre, qd),
                   pool);
      for (size_t i = 0; i < a.size(); ++i)
        ASSERT_NEAR(b[i], a[i], 1e-6 * (1 + std::fabs(a[i]))) << "prefill " << i;
      // Decode ranges: the bound from the codebooks, per query head.
      const int c = cfg.channels, kc = cfg.n_centroids(), groups = hd / c;
      std::vector<float> qs(q.begin(), q.begin() + qd);
      for (float& e : qs) e /= std::sqrt(static_cast<float>(hd));
      double vmin = INFINITY, vmax = -INFINITY;
      for (float x : cb.centroids[layer * 2 + 1]) {
        vmin = std::min<double>(vmin, x);
        vmax = std::max<double>(vmax, x);
      }
      for (int kvh = 0; kvh < s.n_kv_heads; ++kvh) {
        double E = 0;
        for (int h = 0; h < group; ++h) {
          double range = 0;
          for (int g = 0; g < groups; ++g) {
            const float* tab = cb.Table(layer, 0, kvh * groups + g);  // (2^b, c)
            const float* qg = qs.data() + (kvh * group + h) * hd + g * c;
            double lo = INFINITY, hi = -INFINITY;
            for (int e = 0; e < kc; ++e) {
              double dot = 0;
              for (int j = 0; j < c; ++j) dot += double(qg[j]) * tab[e * c + j];
              lo = std::min(lo, dot);
              hi = std::max(hi, dot);
            }
            range = std::max(range, hi - lo);
          }
          E = std::max(E, groups * range / 255 / 2 * 1.001 + 1e-4);
        }
        const double tol = std::tanh(E / 2) * (vmax - vmin) + 1e-5;
        for (auto [t0, t1] : {std::pair<int64_t, int64_t>{0, n_ctx}, {301, 1100}, {70, 1000}}) {
          const float* qg = qs.data() + kvh * group * hd;
          const auto a = testing::PartialAttention(*plain, layer, kvh, qg, group, t0, t1);
          const auto b = testing::PartialAttention(*fast, layer, kvh, qg, group, t0, t1);
          for (int i = 0; i < group * hd; ++i)
            ASSERT_NEAR(b[i], a[i], tol)
                << "kv head " << kvh << " [" << t0 << ", " << t1 << ") value " << i;
        }
      }
      // The bound alone is loose for diffuse softmaxes: also a query aimed at one cached key.
      ASSERT_NO_FATAL_FAILURE(
          testing::ExpectAimedQueryAgrees(*plain, *fast, s, layer, k, n_ctx, 777));
    }
  }
  // Pre-RoPE codebooks and code widths other than 4 and 8 are refused, naming the spec.
  const KvShape s = Shape(4, 2, 16, 64);
  EXPECT_THROW(MakeCqCache(RandomCodebooks(s, CqConfig{4, 8}, 1, KeyPosition::kPreRope), s, 0,
                           "cq:pre:fs", true),
               Error);
  try {
    MakeCqCache(RandomCodebooks(s, CqConfig{4, 5}, 1), s, 0, "cq:five:fs", true);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cq:five:fs"), std::string::npos) << e.what();
  }
}

TEST(CqCache, FromFileThroughMakeKvCache) {
  const KvShape s = Shape(4, 2, 16, 16);
  const std::string path =
      (std::filesystem::temp_directory_path() / "cqkv_cq_cache_test.cqcb").string();
  SaveCodebooks(RandomCodebooks(s, CqConfig{4, 4}, 9, KeyPosition::kPreRope), path);
  auto cache = MakeKvCache("cq:" + path + ":r4", s);
  EXPECT_EQ(cache->format(), "cq:" + path + ":r4");
  EXPECT_DOUBLE_EQ(cache->BytesPerToken(), CqBytesPerToken(CqConfig{4, 4}, s, 4).total());
  // Pre-RoPE codebooks need the pre-RoPE keys.
  std::vector<float> x(s.kv_dim());
  const ConstMat m(x.data(), 1, s.kv_dim());
  EXPECT_THROW(cache->Append(0, KvBlock{0, ConstMat(), m, m}), Error);
  // Another model: the error names the file.
  KvShape other = s;
  other.model_fingerprint = 0x99;
  try {
    MakeKvCache("cq:" + path, other);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
  other = s;
  other.n_layers = 3;
  EXPECT_THROW(MakeKvCache("cq:" + path, other), Error);
  std::filesystem::remove(path);
  try {
    MakeKvCache("cq:" + path, s);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

TEST(CqCache, CheckCodebooksFit) {
  KvShape shape;
  shape.n_layers = 2;
  shape.n_heads = 4;
  shape.n_kv_heads = 2;
  shape.head_dim = 16;
  shape.max_tokens = 8;
  shape.model_fingerprint = 0xfedcba9876543210ull;
  const CodebookSet s = RandomCodebooks(shape, CqConfig{4, 4}, 4);
  CheckCodebooksFit(s, shape, "cb.cqcb");
  shape.model_fingerprint = 0;  // unknown model: only shapes are checked
  CheckCodebooksFit(s, shape, "cb.cqcb");

  KvShape other = shape;
  other.n_layers = 3;
  testing::ExpectErrorMentioning([&] { CheckCodebooksFit(s, other, "cb.cqcb"); },
                                 {"cb.cqcb", "learned on 2 layers", "the model has 3 layers"});
  other = shape;
  other.head_dim = 32;
  testing::ExpectErrorMentioning([&] { CheckCodebooksFit(s, other, "cb.cqcb"); },
                                 {"cb.cqcb", "head dim"});
  other = shape;
  other.model_fingerprint = 0x1234;
  testing::ExpectErrorMentioning(
      [&] { CheckCodebooksFit(s, other, "cb.cqcb"); },
      {"cb.cqcb", "another model", "fedcba9876543210", "0000000000001234"});
}

}  // namespace
}  // namespace cqkv
