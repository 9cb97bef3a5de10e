// Tests of the decode-attention benchmark harness: format parsing, a tiny end-to-end run with
// finite positive figures (fp16's ratio exactly 1), and clear errors for unknown formats.
#include "bench/harness/attn_bench.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "kv/cq_cache.h"
#include "util/error.h"

namespace cqkv {
namespace {

TEST(AttnBench, ParsesFormatNames) {
  const AttnFormat fp16 = ParseAttnFormat("fp16");
  EXPECT_EQ(fp16.name, "fp16");
  EXPECT_FALSE(fp16.random_cq);
  EXPECT_FALSE(ParseAttnFormat("int4-channel").random_cq);
  EXPECT_FALSE(ParseAttnFormat("int2-token").random_cq);

  const AttnFormat cq = ParseAttnFormat("cq:8c4b");
  EXPECT_TRUE(cq.random_cq);
  EXPECT_EQ(cq.cq.channels, 8);
  EXPECT_EQ(cq.cq.bits, 4);
  EXPECT_EQ(cq.window, 0);

  const AttnFormat win = ParseAttnFormat("cq:4c8b:r32");
  EXPECT_TRUE(win.random_cq);
  EXPECT_EQ(win.cq.channels, 4);
  EXPECT_EQ(win.window, 32);

  const AttnFormat res = ParseAttnFormat("cq:8c8b+res:fs");
  EXPECT_TRUE(res.random_cq);
  EXPECT_TRUE(res.residual_values);
  EXPECT_FALSE(res.additive_values);
  EXPECT_TRUE(res.fast_scan);
  EXPECT_TRUE(ParseAttnFormat("cq:4c8b+add").additive_values);
  EXPECT_FALSE(ParseAttnFormat("cq:4c8b+add").residual_values);

  // Anything that is not <c>c<b>b is a codebook path, checked when the cache is made.
  const AttnFormat file = ParseAttnFormat("cq:codebooks/tiny.cqcb");
  EXPECT_FALSE(file.random_cq);

  const auto list = ParseAttnFormats("fp16,int4-channel,,cq:4c8b");
  ASSERT_EQ(list.size(), 3u);
  EXPECT_EQ(list[2].name, "cq:4c8b");
}

TEST(AttnBench, UnknownFormatsAreErrors) {
  EXPECT_THROW(ParseAttnFormat("bf8"), Error);
  EXPECT_THROW(ParseAttnFormat("int3-channel"), Error);  // known family, bad bit width
  EXPECT_THROW(ParseAttnFormat("cq:"), Error);
  EXPECT_THROW(ParseAttnFormat("cq:4c99b"), Error);  // b out of range
  EXPECT_THROW(ParseAttnFormats(","), Error);
  EXPECT_THROW(ParseAttnFormat("cq:4c4b+res"), Error);  // residual values need 8-bit codes
  // A missing codebook file fails when the cache is made, naming the file.
  AttnBenchOptions o;
  o.ctx = 8;
  try {
    MakeBenchCache(ParseAttnFormat("cq:/nonexistent/x.cqcb"), o.Shape(), 1);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/x.cqcb"), std::string::npos) << e.what();
  }
}

TEST(AttnBench, TinyRunGivesFinitePositiveFiguresAndFp16RatioOne) {
  AttnBenchOptions o;
  o.ctx = 64;
  o.batch = 2;
  o.n_heads = 4;
  o.n_kv_heads = 2;
  o.head_dim = 32;
  o.reps = 2;
  o.stream_bytes = size_t{4} << 20;
  o.flush_bytes = size_t{4} << 20;
  o.formats = ParseAttnFormats("fp32,int4-channel,cq:4c8b,cq:8c4b");
  ThreadPool pool(2);
  const AttnBenchReport r = RunAttnBench(o, pool);
  ASSERT_EQ(r.results.size(), 5u);  // fp16 added first for the ratio
  EXPECT_EQ(r.results[0].format, "fp16");
  EXPECT_DOUBLE_EQ(r.results[0].ratio_vs_fp16, 1.0);
  EXPECT_GT(r.stream_gbps, 0);
  EXPECT_TRUE(r.interleaved);                 // small caches: formats timed round-robin
  EXPECT_EQ(r.flush_bytes, size_t{4} << 20);  // cold by default
  EXPECT_NE(AttnBenchMarkdown(r).find("cold caches (4 MiB flushed per round)"), std::string::npos);
  for (const AttnResult& a : r.results) {
    for (double x : {a.seconds, a.ns_per_token, a.gbps, a.ratio_vs_fp16, a.bytes_per_token,
                     a.bits_per_channel}) {
      EXPECT_TRUE(std::isfinite(x) && x > 0) << a.format << ": " << x;
    }
  }
  // One layer of fp16: 2 (K, V) * kv_dim * 2 bytes; 16 bits per channel.
  EXPECT_DOUBLE_EQ(r.results[0].bytes_per_token, 2.0 * 2 * 32 * 2);
  EXPECT_DOUBLE_EQ(r.results[0].bits_per_channel, 16.0);
  EXPECT_NEAR(r.results[3].bits_per_channel, 2.0, 1e-9);  // cq:4c8b, codebooks excluded
  // GB/s is exactly bytes_per_token * T * B / seconds.
  const AttnResult& cq = r.results[3];
  EXPECT_NEAR(cq.gbps, cq.bytes_per_token * 64 * 2 / cq.seconds / 1e9, 1e-9 * cq.gbps);
  EXPECT_NE(AttnBenchMarkdown(r).find("| cq:8c4b |"), std::string::npos);
  EXPECT_NE(AttnBenchJson(r).find("\"ratio_vs_fp16\""), std::string::npos);
}

// Caches too large to hold together run one format at a time; the figures keep their meaning.
TEST(AttnBench, SequentialWhenCachesDoNotFitTogether) {
  AttnBenchOptions o;
  o.ctx = 32;
  o.n_heads = 4;
  o.n_kv_heads = 2;
  o.head_dim = 32;
  o.reps = 1;
  o.stream_bytes = o.flush_bytes = size_t{1} << 20;
  o.interleave_max_bytes = 0;
  o.formats = ParseAttnFormats("fp16,cq:4c4b");
  ThreadPool pool(2);
  const AttnBenchReport r = RunAttnBench(o, pool);
  EXPECT_FALSE(r.interleaved);
  ASSERT_EQ(r.results.size(), 2u);
  EXPECT_DOUBLE_EQ(r.results[0].ratio_vs_fp16, 1.0);
  EXPECT_NEAR(r.results[1].ratio_vs_fp16, r.results[0].seconds / r.results[1].seconds, 1e-12);
}

// Random codebooks saved to a file time through the cq:PATH route like the in-memory ones.
TEST(AttnBench, CodebookFileFormat) {
  AttnBenchOptions o;
  o.ctx = 32;
  o.n_heads = 4;
  o.n_kv_heads = 2;
  o.head_dim = 32;
  const std::string path =
      (std::filesystem::temp_directory_path() / "attn_bench_test.cqcb").string();
  SaveCodebooks(RandomCodebooks(o.Shape(), CqConfig::Parse("4c4b"), 3), path);
  ThreadPool pool(1);
  AttnCaches c = BuildAttnCaches(ParseAttnFormat("cq:" + path), o.Shape(), 1, pool);
  const AttnResult r = TimeAttend(c, 1, pool);
  EXPECT_NEAR(r.bits_per_channel, 1.0, 1e-9);
  EXPECT_GT(r.gbps, 0);
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace cqkv
