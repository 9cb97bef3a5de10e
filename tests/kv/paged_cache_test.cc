// Paged storage of the fp32/fp16, int<B>-token, int<B>-channel, nf<B> and kivi<B> formats
// (kv/page_pool.h, kv/page_layout.h): attention over contexts spanning several pages equals the
// naive definition, the page size changes nothing but the kernel call split, pages come from and
// return to a shared pool, and a spent budget is a clean kResourceExhausted error.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "kv/decode_attention.h"
#include "kv/quant_cache.h"
#include "kv/quant_cache_testing.h"
#include "util/fp16.h"
#include "util/thread_pool.h"

namespace cqkv {
namespace {

using testing::RandomKv;
using testing::TestShape;

const std::vector<std::string>& Formats() {
  static const std::vector<std::string> f = {
      "fp32", "fp16",  "int4-token",   "int2-token:g32", "int4-channel", "int2-channel:g32",
      "nf4",  "kivi2", "kivi4:g32:r64"};
  return f;
}

// Every cached K (or V) row of `layer` as attention sees it: the dequantised rows of quantised
// formats, the appended rows (fp16-rounded for fp16) of dense ones, (tokens, kv_dim).
std::vector<float> RowsAsSeen(const KvCache& c, int layer, KvPart part,
                              const std::vector<float>& appended) {
  if (const auto* q = dynamic_cast<const QuantKvCache*>(&c)) {
    return testing::DequantAll(*q, layer, part);
  }
  std::vector<float> out = appended;
  if (c.format() == "fp16") {
    for (float& x : out) x = F16ToF32(F32ToF16(x));
  }
  return out;
}

// Appends `blocks` to every layer of `cache` and checks layer 1's attention for the last (up to
// 4) queries of each block (prefill for several rows, decode through DecodeAttention for one;
// fewer queries keep the row-at-a-time prefill path of the quantised formats fast) against the
// naive double-precision attention over the rows the cache holds, within 1e-5 relative as the
// format tests do. At the end, decode with fixed blocks of 512 (two pages per work unit) and 37
// tokens (ranges starting inside pages) must agree too.
void CheckAgainstNaive(KvCache& cache, const std::vector<int64_t>& blocks, uint32_t seed) {
  const KvShape& s = cache.shape();
  RandomKv gen(s, seed);
  ThreadPool pool(2);
  std::vector<float> all_k, all_v, q;
  int64_t pos = 0;
  for (int64_t block : blocks) {
    std::vector<float> k, v;
    gen.Next(block, k, v, q);
    all_k.insert(all_k.end(), k.begin(), k.end());
    all_v.insert(all_v.end(), v.begin(), v.end());
    const ConstMat km(k.data(), block, s.kv_dim()), vm(v.data(), block, s.kv_dim());
    for (int l = 0; l < s.n_layers; ++l) cache.Append(l, KvBlock{pos, km, km, vm});
    const int64_t nq = std::min<int64_t>(block, 4), p0 = pos + block - nq;
    q.erase(q.begin(), q.end() - nq * s.q_dim());
    std::vector<float> out(q.size());
    cache.Attend(1, ConstMat(q.data(), nq, s.q_dim()), p0, Mat(out.data(), nq, s.q_dim()), pool);
    const auto ref =
        testing::NaiveAttention(s, q, nq, p0, RowsAsSeen(cache, 1, KvPart::kKey, all_k),
                                RowsAsSeen(cache, 1, KvPart::kValue, all_v));
    for (size_t i = 0; i < out.size(); ++i) {
      ASSERT_NEAR(out[i], ref[i], 1e-5 * (1 + std::fabs(ref[i])))
          << cache.format() << " block at " << pos << " i=" << i;
    }
    pos += block;
  }
  // The last block's last query again, through fixed decode blocks.
  const ConstMat q1(q.data() + (q.size() / s.q_dim() - 1) * s.q_dim(), 1, s.q_dim());
  const auto ref = testing::NaiveAttention(s, std::vector<float>(q1.Row(0), q1.Row(0) + s.q_dim()),
                                           1, pos - 1, RowsAsSeen(cache, 1, KvPart::kKey, all_k),
                                           RowsAsSeen(cache, 1, KvPart::kValue, all_v));
  const DecodeSeq seq{&cache, pos};
  for (int64_t block_tokens : {512, 37}) {
    std::vector<float> out(static_cast<size_t>(s.q_dim()));
    DecodeAttention(std::span(&seq, 1), 1, q1, Mat(out.data(), 1, s.q_dim()), pool,
                    DecodeOptions{.block_tokens = block_tokens});
    for (size_t i = 0; i < out.size(); ++i) {
      ASSERT_NEAR(out[i], ref[i], 1e-5 * (1 + std::fabs(ref[i])))
          << cache.format() << " decode block " << block_tokens << " i=" << i;
    }
  }
}

TEST(PagedKvCache, AttentionOverSeveralPagesMatchesNaive) {
  for (const std::string& spec : Formats()) {
    SCOPED_TRACE(spec);
    auto cache = MakeKvCache(spec, TestShape(8, 2, 64, 700));
    // Prefill blocks and decode steps crossing the page boundaries at 256 and 512.
    CheckAgainstNaive(*cache, {250, 1, 5, 1, 200, 1, 60, 1, 1, 179, 1}, 3);
    if (::testing::Test::HasFatalFailure()) return;
  }
}

// The same 700 tokens with pages of 256 and of 1024 tokens: prefill reads identical rows, and
// decode only splits its kernel calls at other places (on 64-token kernel blocks either way), so
// outputs agree to 1e-6 relative (in practice bit for bit).
TEST(PagedKvCache, PageSizeDoesNotChangeAttention) {
  for (const std::string& spec : Formats()) {
    SCOPED_TRACE(spec);
    KvShape s = TestShape(8, 2, 64, 700);
    auto small = MakeKvCache(spec, s);
    s.page_tokens = 1024;
    auto large = MakeKvCache(spec, s);
    EXPECT_EQ(large->shape().page_tokens, 1024);
    RandomKv gen(s, 5);
    ThreadPool pool(2);
    int64_t pos = 0;
    for (int64_t block : {300, 1, 396, 1, 1, 1}) {
      std::vector<float> k, v, q;
      gen.Next(block, k, v, q);
      const ConstMat km(k.data(), block, s.kv_dim()), vm(v.data(), block, s.kv_dim());
      for (KvCache* c : {small.get(), large.get()}) {
        for (int l = 0; l < s.n_layers; ++l) c->Append(l, KvBlock{pos, km, km, vm});
      }
      // The block's last (up to) 4 queries: prefill when several, decode when one.
      const int64_t nq = std::min<int64_t>(block, 4), p0 = pos + block - nq;
      const ConstMat qm(q.data() + (block - nq) * s.q_dim(), nq, s.q_dim());
      std::vector<float> a(static_cast<size_t>(nq * s.q_dim())), b(a.size());
      small->Attend(1, qm, p0, Mat(a.data(), nq, s.q_dim()), pool);
      large->Attend(1, qm, p0, Mat(b.data(), nq, s.q_dim()), pool);
      for (size_t i = 0; i < a.size(); ++i) {
        ASSERT_NEAR(a[i], b[i], 1e-6 * std::fabs(b[i]) + 1e-30) << "block at " << pos << " i=" << i;
      }
      pos += block;
    }
    EXPECT_EQ(small->pages_held(), 3);
    EXPECT_EQ(large->pages_held(), 1);
  }
}

// Formats that re-encode a partial token group as tokens join (int<B>-channel) or flush their
// window in groups (KIVI) store the same rows token by token as in one block, across pages.
TEST(PagedKvCache, StreamingAcrossPagesEqualsOneBlock) {
  for (const char* spec : {"int4-channel:g32", "int2-channel", "kivi2:g32:r64"}) {
    SCOPED_TRACE(spec);
    const KvShape s = TestShape(4, 2, 64, 600);
    auto stream = MakeKvCache(spec, s), once = MakeKvCache(spec, s);
    testing::ExpectStreamingEqualsOneBlock(dynamic_cast<QuantKvCache&>(*stream),
                                           dynamic_cast<QuantKvCache&>(*once), 600, 7, 1);
    EXPECT_EQ(stream->pages_held(), 3);
  }
}

TEST(PagedKvCache, PageBytesAndFixedBytes) {
  const KvShape s = TestShape(8, 2, 64, 700);  // 2 layers x K/V x 2 KV heads = 8 regions a page
  // fp32 / fp16: (256, 64) elements a region.
  EXPECT_EQ(MakeKvCache("fp32", s)->PageBytes(), 8 * 256 * 64 * 4);
  EXPECT_EQ(MakeKvCache("fp16", s)->PageBytes(), 8 * 256 * 64 * 2);
  // int4-token (g64): 256 rows of 32 code bytes + 64 slack, then a (scale, min) pair per row.
  EXPECT_EQ(MakeKvCache("int4-token", s)->PageBytes(), 8 * (256 * 32 + 64 + 256 * 4));
  // nf4 (g64): as int4-token with one fp16 absmax per row.
  EXPECT_EQ(MakeKvCache("nf4", s)->PageBytes(), 8 * (256 * 32 + 64 + 256 * 2));
  // int4-channel (g128): the codes, then a pair per channel for each of the 2 token groups.
  EXPECT_EQ(MakeKvCache("int4-channel", s)->PageBytes(), 8 * (256 * 32 + 64 + 2 * 64 * 4));
  // kivi2 (g32): 16 code bytes a row; keys a pair per channel per 32 tokens, values a pair per
  // 32 channels per token: both 2048 bytes.
  EXPECT_EQ(MakeKvCache("kivi2", s)->PageBytes(), 8 * (256 * 16 + 64 + 2048));
  // Outside pages: int<B>-channel's fp32 staging of one group per (layer, K/V, KV head), KIVI's
  // fp16 window of R + G tokens per layer for K and V.
  EXPECT_EQ(MakeKvCache("fp16", s)->FixedBytes(), 0);
  EXPECT_EQ(MakeKvCache("int4-token", s)->FixedBytes(), 0);
  EXPECT_EQ(MakeKvCache("int4-channel", s)->FixedBytes(), 2 * 2 * 128 * 128 * 4);
  EXPECT_EQ(MakeKvCache("kivi2", s)->FixedBytes(), 2 * 2 * (128 + 32) * 128 * 2);
  EXPECT_EQ(MakeKvCache("kivi4:g32:r64", TestShape(8, 2, 64, 50))->FixedBytes(),
            2 * 2 * 50 * 128 * 2);  // never more than the context
}

// Appends n random tokens from position pos to every layer.
void AppendRandom(KvCache& c, int64_t pos, int64_t n, uint32_t seed) {
  const KvShape& s = c.shape();
  RandomKv gen(s, seed);
  std::vector<float> k, v, q;
  gen.Next(n, k, v, q);
  const ConstMat km(k.data(), n, s.kv_dim()), vm(v.data(), n, s.kv_dim());
  for (int l = 0; l < s.n_layers; ++l) c.Append(l, KvBlock{pos, km, km, vm});
}

TEST(PagedKvCache, PagesComeFromASharedPoolAndReturnToIt) {
  for (const std::string& spec : Formats()) {
    SCOPED_TRACE(spec);
    const KvShape s = TestShape(4, 2, 64, 1000);
    const auto proto = MakeKvCache(spec, s);
    auto pool = std::make_shared<PagePool>(proto->PageBytes(), 4 * proto->PageBytes());
    auto a = proto->NewSibling(pool);
    EXPECT_EQ(a->format(), spec);
    EXPECT_EQ(a->pool(), pool);
    AppendRandom(*a, 0, 600, 1);
    EXPECT_EQ(a->pages_held(), a->PagesFor(600));
    EXPECT_EQ(pool->used(), 3);

    // A sibling draws from the same budget: one page left.
    auto b = a->NewSibling(pool);
    EXPECT_EQ(b->tokens(0), 0);
    EXPECT_TRUE(b->TryReserve(256));
    EXPECT_EQ(pool->used(), 4);
    EXPECT_FALSE(b->TryReserve(257));  // beyond the budget: nothing changes
    EXPECT_EQ(b->pages_held(), 1);
    EXPECT_FALSE(a->TryReserve(769));
    EXPECT_EQ(a->pages_held(), 3);
    EXPECT_EQ(pool->used(), 4);
    EXPECT_TRUE(a->TryReserve(768));  // already held

    // Append beyond the budget throws kResourceExhausted and leaves the cache as it was.
    try {
      AppendRandom(*a, 600, 200, 2);
      ADD_FAILURE() << "no error appending past the budget";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kResourceExhausted) << e.what();
    }
    EXPECT_EQ(a->tokens(0), 600);
    EXPECT_EQ(a->tokens(1), 600);
    AppendRandom(*a, 600, 168, 3);  // what the held pages take still fits
    EXPECT_EQ(a->tokens(1), 768);

    b.reset();  // destruction returns pages
    EXPECT_EQ(pool->used(), 3);
    a->Clear();
    EXPECT_EQ(a->tokens(0), 0);
    EXPECT_EQ(a->pages_held(), 0);
    EXPECT_EQ(pool->used(), 0);
    AppendRandom(*a, 0, 300, 4);  // a cleared cache starts over
    EXPECT_EQ(pool->used(), 2);
    a.reset();
    EXPECT_EQ(pool->used(), 0);
  }
}

// TryAdmit charges a sequence's fixed buffers with its pages, all or nothing, and the cache returns
// both when it is destroyed (int<B>-channel's staging, KIVI's window).
TEST(PagedKvCache, TryAdmitChargesFixedBytesUntilDestruction) {
  for (const std::string spec : {"int4-channel", "kivi2"}) {
    SCOPED_TRACE(spec);
    const KvShape s = TestShape(4, 2, 64, 1000);
    const auto proto = MakeKvCache(spec, s);
    const int64_t page = proto->PageBytes(), fixed = proto->FixedBytes();
    ASSERT_GT(fixed, 0);
    // Room for two pages of tokens beside the fixed bytes, which count in whole pages.
    auto pool = std::make_shared<PagePool>(page, (2 + (fixed + page - 1) / page) * page);
    auto a = proto->NewSibling(pool);
    EXPECT_FALSE(a->TryAdmit(3 * 256));  // pages + fixed bytes exceed the budget: nothing held
    EXPECT_EQ(pool->used(), 0);
    EXPECT_EQ(pool->reserved_bytes(), 0);
    ASSERT_TRUE(a->TryAdmit(256));
    EXPECT_EQ(pool->used(), 1);
    EXPECT_EQ(pool->reserved_bytes(), fixed);
    ASSERT_TRUE(a->TryAdmit(257));  // the fixed bytes are charged once
    EXPECT_EQ(pool->reserved_bytes(), fixed);
    a.reset();
    EXPECT_EQ(pool->used(), 0);
    EXPECT_EQ(pool->reserved_bytes(), 0);
  }
}

// Caches made without a pool draw from a private unbounded one, sized to their pages.
TEST(PagedKvCache, PrivatePoolByDefault) {
  for (const std::string& spec : Formats()) {
    auto c = MakeKvCache(spec, TestShape(4, 2, 64, 600));
    EXPECT_EQ(c->pool(), nullptr) << spec;
    AppendRandom(*c, 0, 520, 1);
    ASSERT_NE(c->pool(), nullptr) << spec;
    EXPECT_EQ(c->pool()->page_bytes(), c->PageBytes()) << spec;
    EXPECT_EQ(c->pool()->used(), 3) << spec;
    auto sib = c->NewSibling();
    EXPECT_NE(sib->pool(), c->pool()) << spec;  // siblings without a pool do not share one
  }
}

TEST(PagedKvCache, TokenGroupsMustDivideThePage) {
  KvShape s = TestShape(4, 2, 96, 64);
  testing::ExpectErrorNaming([&] { MakeKvCache("int4-channel:g96", s); }, "'int4-channel:g96'");
  testing::ExpectErrorNaming([&] { MakeKvCache("kivi2:g96", s); }, "'kivi2:g96'");
  s.page_tokens = 768;
  EXPECT_EQ(MakeKvCache("int4-channel:g96", s)->format(), "int4-channel:g96");
  EXPECT_EQ(MakeKvCache("kivi2:g96", s)->format(), "kivi2:g96");
  s.page_tokens = 300;  // pages are multiples of the 256-token decode block
  EXPECT_THROW(MakeKvCache("fp16", s), Error);
}

}  // namespace
}  // namespace cqkv
