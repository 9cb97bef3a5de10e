// The mixed-precision composite cache (kv/mixed_cache.h): a layer's format alone decides its
// attention (layers given a format through a mixed spec equal that format bit for bit), K/V split
// layers equal the naive attention over the key rows of one format and the value rows of the
// other, bits and bytes add up in closed form, and siblings share one page pool and budget.
#include "kv/mixed_cache.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "kv/cq_cache.h"
#include "kv/decode_attention.h"
#include "kv/page_layout.h"
#include "kv/quant_cache_testing.h"
#include "quant/codebook.h"
#include "util/thread_pool.h"

namespace cqkv {
namespace {

using testing::RandomKv;
using testing::TestShape;

// A file of random codebooks (2 channels x 4 bits) fitting `s`.
std::string CodebookFile(const KvShape& s, const std::string& name,
                         KeyPosition keys = KeyPosition::kPostRope) {
  const std::string path = (std::filesystem::temp_directory_path() / name).string();
  SaveCodebooks(RandomCodebooks(s, CqConfig{2, 4}, 11, keys), path);
  return path;
}

// Feeds the same blocks (prefill, then decode steps, crossing the page boundaries at 256 and 512)
// from position pos0 to every cache of `caches` and collects each layer's attention output of every
// block's last (up to 3) queries: out[cache][layer] is the concatenation over blocks.
std::vector<std::vector<std::vector<float>>> AttendAll(const std::vector<KvCache*>& caches,
                                                       const std::vector<int64_t>& blocks,
                                                       uint32_t seed, int64_t pos0 = 0) {
  const KvShape& s = caches[0]->shape();
  RandomKv gen(s, seed);
  ThreadPool pool(2);
  std::vector<std::vector<std::vector<float>>> out(
      caches.size(), std::vector<std::vector<float>>(static_cast<size_t>(s.n_layers)));
  int64_t pos = pos0;
  for (int64_t block : blocks) {
    std::vector<float> k, v, q;
    gen.Next(block, k, v, q);
    const ConstMat km(k.data(), block, s.kv_dim()), vm(v.data(), block, s.kv_dim());
    const int64_t nq = std::min<int64_t>(block, 3);
    const ConstMat qm(q.data() + (block - nq) * s.q_dim(), nq, s.q_dim());
    for (size_t c = 0; c < caches.size(); ++c) {
      for (int l = 0; l < s.n_layers; ++l) {
        caches[c]->Append(l, KvBlock{pos, km, km, vm});
        std::vector<float> o(static_cast<size_t>(nq * s.q_dim()));
        caches[c]->Attend(l, qm, pos + block - nq, Mat(o.data(), nq, s.q_dim()), pool);
        out[c][l].insert(out[c][l].end(), o.begin(), o.end());
      }
    }
    pos += block;
  }
  return out;
}

const std::vector<int64_t>& Blocks() {
  static const std::vector<int64_t> b = {250, 1, 7, 1, 300, 1, 1};
  return b;
}

// Layers given the same format through different parts (and so different sub-caches over
// fewer layers, cq codebooks sliced to them) attend exactly as that format alone.
TEST(MixedCache, EveryLayerOneFormatEqualsThatFormat) {
  const KvShape s = TestShape(8, 2, 64, 600, 3);
  const std::string cb = CodebookFile(s, "cqkv_mixed_same.cqcb");
  const std::filesystem::path p(cb);
  const std::string cb2 = "cq:" + (p.parent_path() / "." / p.filename()).string() + ":r16";
  const struct {
    std::string plain, mixed;
  } cases[] = {
      {"int2-token", "int2-token@1;int2-token:g64"},  // g64 is int2-token's default at hd 64
      {"kivi2:r32", "kivi2:r32@0,2;kivi2:r32:g32"},
      // The same file under a second name makes a second sub-cache with sliced codebooks.
      {"cq:" + cb + ":r16", "cq:" + cb + ":r16@first1;K=" + cb2 + ",V=" + cb2 + "@1-2"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.mixed);
    auto plain = MakeKvCache(c.plain, s);
    auto mixed = MakeKvCache(c.mixed, s);
    EXPECT_EQ(mixed->format(), c.mixed);
    const auto out = AttendAll({plain.get(), mixed.get()}, Blocks(), 1);
    for (int l = 0; l < s.n_layers; ++l) EXPECT_EQ(out[0][l], out[1][l]) << "layer " << l;
    EXPECT_DOUBLE_EQ(mixed->BitsPerChannel(), plain->BitsPerChannel());
  }
}

// int2-token with fp16 first and last layers: those layers are exactly fp16, the others exactly
// int2-token.
TEST(MixedCache, Fp16OverrideEqualsFp16OnThoseLayers) {
  const KvShape s = TestShape(8, 2, 64, 600, 4);
  auto fp16 = MakeKvCache("fp16", s), int2 = MakeKvCache("int2-token", s);
  auto mixed = MakeKvCache("int2-token;fp16@first1,last1", s);
  const auto out = AttendAll({fp16.get(), int2.get(), mixed.get()}, Blocks(), 2);
  EXPECT_EQ(out[2][0], out[0][0]);
  EXPECT_EQ(out[2][1], out[1][1]);
  EXPECT_EQ(out[2][2], out[1][2]);
  EXPECT_EQ(out[2][3], out[0][3]);
  EXPECT_NE(out[0][1], out[1][1]);  // the formats do differ
}

// A split layer scores with format A's keys and sums format B's values: it equals the naive
// double-precision attention over A's key rows and B's value rows (from caches of A and of B fed
// the same tokens) within 1e-5 relative, the tolerance of every format's own test (fp32 sums
// of 64-term dots and of up to 560 weighted rows). Prefill, decode, and decode with fixed blocks
// of 37 tokens (ranges inside pages) are checked.
TEST(MixedCache, KvSplitEqualsNaiveOverEachFormatsRows) {
  const KvShape s = TestShape(8, 2, 64, 600, 2);
  const std::string cb = CodebookFile(s, "cqkv_mixed_split.cqcb");
  // Pre-RoPE keys: rows are rotated to their positions when read.
  const std::string pre = CodebookFile(s, "cqkv_mixed_split_pre.cqcb", KeyPosition::kPreRope);
  const struct {
    std::string k, v;
  } cases[] = {{"int4-token", "int2-token"},
               {"int2-channel:g32", "fp16"},
               {"cq:" + cb + ":r8", "kivi2:r16"},
               {"nf3", "cq:" + cb},
               {"cq:" + pre, "int4-channel:g32"}};
  ThreadPool pool(2);
  for (const auto& c : cases) {
    const std::string spec = "K=" + c.k + ",V=" + c.v;
    SCOPED_TRACE(spec);
    auto a = MakeKvCache(c.k, s), b = MakeKvCache(c.v, s), mixed = MakeKvCache(spec, s);
    RandomKv gen(s, 3);
    int64_t pos = 0;
    for (int64_t block : Blocks()) {
      std::vector<float> k, v, q;
      gen.Next(block, k, v, q);
      const ConstMat km(k.data(), block, s.kv_dim()), vm(v.data(), block, s.kv_dim());
      for (KvCache* x : {a.get(), b.get(), mixed.get()}) {
        for (int l = 0; l < s.n_layers; ++l) x->Append(l, KvBlock{pos, km, km, vm});
      }
      pos += block;
      // Rows as each sub-format gives them, (pos, kv_dim).
      std::vector<float> kr(static_cast<size_t>(pos * s.kv_dim())), vr(kr.size()), row(kr.size());
      for (int h = 0; h < s.n_kv_heads; ++h) {
        a->ReadRows(1, KvPart::kKey, 0, pos, h, row.data());
        for (int64_t t = 0; t < pos; ++t) {
          std::copy_n(row.data() + t * s.head_dim, s.head_dim,
                      kr.data() + t * s.kv_dim() + h * s.head_dim);
        }
        b->ReadRows(1, KvPart::kValue, 0, pos, h, row.data());
        for (int64_t t = 0; t < pos; ++t) {
          std::copy_n(row.data() + t * s.head_dim, s.head_dim,
                      vr.data() + t * s.kv_dim() + h * s.head_dim);
        }
      }
      const int64_t nq = std::min<int64_t>(block, 3);
      q.erase(q.begin(), q.end() - nq * s.q_dim());
      const auto ref = testing::NaiveAttention(s, q, nq, pos - nq, kr, vr);
      std::vector<float> out(q.size());
      mixed->Attend(1, ConstMat(q.data(), nq, s.q_dim()), pos - nq, Mat(out.data(), nq, s.q_dim()),
                    pool);
      for (size_t i = 0; i < out.size(); ++i) {
        ASSERT_NEAR(out[i], ref[i], 1e-5 * (1 + std::fabs(ref[i]))) << "at " << pos << " i=" << i;
      }
      if (nq == 1) {
        const DecodeSeq seq{mixed.get(), pos};
        DecodeAttention(std::span(&seq, 1), 1, ConstMat(q.data(), 1, s.q_dim()),
                        Mat(out.data(), 1, s.q_dim()), pool, DecodeOptions{.block_tokens = 37});
        for (size_t i = 0; i < out.size(); ++i) {
          ASSERT_NEAR(out[i], ref[i], 1e-5 * (1 + std::fabs(ref[i]))) << "decode37 i=" << i;
        }
      }
    }
  }
}

// head_dim 64: int2-token is 2 + 32/64 = 2.5 bits, int4-token 4.5, fp16 16, cq 2c4b 2.
TEST(MixedCache, BitsAreTheAverageOverLayersAndParts) {
  const KvShape s = TestShape(8, 2, 64, 512, 4);
  const std::string cb = CodebookFile(s, "cqkv_mixed_bits.cqcb");
  EXPECT_DOUBLE_EQ(MakeKvCache("int2-token;fp16@first1,last1", s)->BitsPerChannel(),
                   (2 * 2.5 + 2 * 16) / 4.0);
  EXPECT_DOUBLE_EQ(MakeKvCache("K=int4-token,V=int2-token", s)->BitsPerChannel(), (4.5 + 2.5) / 2);
  EXPECT_DOUBLE_EQ(MakeKvCache("cq:" + cb + ":r32;fp16@0", s)->BitsPerChannel(),
                   (3 * 2 + 16) / 4.0);
  EXPECT_DOUBLE_EQ(MakeKvCache("int2-token;K=fp16,V=int4-token@3", s)->BitsPerChannel(),
                   (3 * 2.5 + (16 + 4.5) / 2) / 4.0);
  // Bytes: everything stored. 1 of 4 layers fp16 is a quarter of an fp16 cache plus three
  // quarters of an int2-token one; a split layer stores both formats' K and V.
  const double fp16 = MakeKvCache("fp16", s)->BytesPerToken();
  const double int2 = MakeKvCache("int2-token", s)->BytesPerToken();
  const double int4 = MakeKvCache("int4-token", s)->BytesPerToken();
  EXPECT_DOUBLE_EQ(MakeKvCache("int2-token;fp16@last1", s)->BytesPerToken(),
                   fp16 / 4 + int2 * 3 / 4);
  EXPECT_DOUBLE_EQ(MakeKvCache("K=int4-token,V=int2-token", s)->BytesPerToken(), int4 + int2);
  EXPECT_DOUBLE_EQ(
      MakeKvCache("cq:" + cb + ":r32;fp16@0", s)->BytesPerToken(),
      fp16 / 4 + CqBytesPerToken(CqConfig{2, 4}, TestShape(8, 2, 64, 512, 3), 32).total());
}

// A composite page is its sub-caches' pages side by side (each 64-byte aligned); fixed and
// shared bytes add up; siblings take pages from one pool, share cq codebooks, and return
// everything on Clear and destruction; a spent budget fails Append cleanly.
TEST(MixedCache, PagingAndSiblings) {
  const KvShape s = TestShape(4, 2, 64, 1000, 4);
  const std::string cb = CodebookFile(s, "cqkv_mixed_pages.cqcb");
  const std::string spec = "cq:" + cb + ":r8;fp16@0;K=int4-channel,V=kivi2@3";
  auto proto = MakeKvCache(spec, s);
  KvShape one = s, two = s;
  one.n_layers = 1;
  two.n_layers = 2;
  // The same sizes as the cq sub-cache over layers 1 and 2 (a 2-layer codebook file).
  auto cq = MakeKvCache("cq:" + CodebookFile(two, "cqkv_mixed_pages2.cqcb") + ":r8", two),
       f16 = MakeKvCache("fp16", one);
  auto i4 = MakeKvCache("int4-channel", one), kv2 = MakeKvCache("kivi2", one);
  EXPECT_EQ(proto->PageBytes(), AlignUp64(cq->PageBytes()) + AlignUp64(f16->PageBytes()) +
                                    AlignUp64(i4->PageBytes()) + AlignUp64(kv2->PageBytes()));
  EXPECT_EQ(proto->FixedBytes(), cq->FixedBytes() + i4->FixedBytes() + kv2->FixedBytes());
  EXPECT_EQ(proto->SharedBytes(), cq->SharedBytes());
  EXPECT_GT(proto->SharedBytes(), 0);

  const int64_t page = proto->PageBytes();
  const int64_t fixed_pages = (proto->FixedBytes() + page - 1) / page;
  auto pool = std::make_shared<PagePool>(page, (4 + fixed_pages) * page);
  auto a = proto->NewSibling(pool);
  EXPECT_EQ(a->SharedBytes(), proto->SharedBytes());
  ASSERT_TRUE(a->TryAdmit(600));
  EXPECT_EQ(pool->used(), 3);
  EXPECT_EQ(pool->reserved_bytes(), proto->FixedBytes());
  auto b = a->NewSibling(pool);
  EXPECT_FALSE(b->TryReserve(512));  // one page left
  EXPECT_EQ(b->pages_held(), 0);
  // The sibling attends as the original does on the same tokens.
  const auto out = AttendAll({a.get(), b.get()}, {200, 1}, 5);
  for (int l = 0; l < s.n_layers; ++l) EXPECT_EQ(out[0][l], out[1][l]) << "layer " << l;
  EXPECT_EQ(pool->used(), 4);
  try {
    AttendAll({b.get()}, {300}, 6, 201);  // b needs a second page: the budget is spent
    ADD_FAILURE() << "no error appending past the budget";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kResourceExhausted) << e.what();
  }
  EXPECT_EQ(b->tokens(0), 201);
  EXPECT_EQ(b->tokens(3), 201);
  b->Clear();
  EXPECT_EQ(b->pages_held(), 0);
  EXPECT_EQ(pool->used(), 3);
  AttendAll({b.get()}, {40}, 7);  // a cleared composite takes pages again
  EXPECT_EQ(pool->used(), 4);
  a.reset();
  b.reset();
  EXPECT_EQ(pool->used(), 0);
  EXPECT_EQ(pool->reserved_bytes(), 0);
}

TEST(MixedCache, ShapeErrorsNameTheSpec) {
  const KvShape s = TestShape(4, 2, 64, 100, 4);
  testing::ExpectErrorNaming([&] { MakeKvCache("int2-token;fp16@4", s); },
                             "part 'fp16@4': layer 4 is past the model's 4 layers");
  KvShape other = s;
  other.n_layers = 3;
  const std::string cb = CodebookFile(other, "cqkv_mixed_badcb.cqcb");
  // A codebook must cover the whole model even when only some layers use it.
  testing::ExpectErrorNaming([&] { MakeKvCache("fp16;cq:" + cb + "@0", s); }, "does not fit");
}

}  // namespace
}  // namespace cqkv
