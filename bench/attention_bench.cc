// Decode-attention speed of every KV format (Google Benchmark): one query per sequence over B
// random caches of T tokens, 32 query heads x 128 channels with 8 (Mistral-7B) or 32 (LLaMA-2-7B)
// KV heads, one layer. Counters: ns_per_token (per cached token, sequence and layer), GB/s of
// cache bytes read (BytesPerToken of one layer x T x B / round time), ratio_vs_fp16 (fp16 time /
// this time, same shape, same process) and stream_GB/s (STREAM-like read bound, same process).
//   attention_bench [--threads N] [--large] [--max-gib G] [--warm] [google-benchmark flags]
// Each round starts with the LLC flushed, as a real decode step finds it (--warm: not flushed).
// The default grid is modest (T <= 16k, B <= 8, 8 KV heads, one 32-KV-head case; about a minute);
// --large runs T in 1k..128k x B in {1, 8, 32, 64} x {8, 32} KV heads (filling takes hours:
// pick cases with --benchmark_filter, e.g. 'kvh8/ctx131072/b1/').
// Combinations whose caches would exceed --max-gib (default 8) are skipped with a note.
#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "bench/harness/attn_bench.h"

namespace cqkv {
namespace {

struct Env {
  int threads = 2;
  bool warm = false;  // --warm: no LLC flush before each round (see CacheFlusher)
  double stream_gbps = 0;
  std::unique_ptr<ThreadPool> pool;
  std::unique_ptr<CacheFlusher> flush;
  // Median fp16 round seconds per shape key, for ratio_vs_fp16.
  std::map<std::string, double> fp16_seconds;
  // The caches of the last case: Google Benchmark may call a case more than once (iteration
  // estimation), and filling large caches costs far more than timing them.
  std::string slot_key;
  std::unique_ptr<AttnCaches> slot;
};
Env& env() {
  static Env e;
  return e;
}

struct Case {
  int ctx;
  int batch;
  int kv_heads;
  AttnFormat format;
  KvShape Shape() const {
    AttnBenchOptions o;
    o.ctx = ctx;
    o.batch = batch;
    o.n_kv_heads = kv_heads;
    return o.Shape();  // 32 heads x 128, one layer
  }
  std::string ShapeKey() const { return fmt::format("kvh{}/ctx{}/b{}", kv_heads, ctx, batch); }
};

AttnCaches& CachesFor(const Case& c) {
  Env& e = env();
  const std::string key = c.ShapeKey() + "/" + c.format.name;
  if (e.slot_key != key) {
    e.slot.reset();  // free the previous case before filling the next
    e.slot = std::make_unique<AttnCaches>(BuildAttnCaches(c.format, c.Shape(), c.batch, *e.pool));
    e.slot_key = key;
  }
  return *e.slot;
}

// fp16's round time for the case's shape; measured here only when a filter left fp16 out.
double Fp16Seconds(const Case& c) {
  Env& e = env();
  const auto it = e.fp16_seconds.find(c.ShapeKey());
  if (it != e.fp16_seconds.end()) return it->second;
  Case f = c;
  f.format = ParseAttnFormat("fp16");
  const double s = TimeAttend(CachesFor(f), 3, *e.pool, e.warm ? nullptr : e.flush.get()).seconds;
  e.fp16_seconds[c.ShapeKey()] = s;
  return s;
}

void BM_Attend(benchmark::State& state, const Case& c) {
  Env& e = env();
  AttnCaches* caches = &CachesFor(c);
  CacheFlusher* flush = e.warm ? nullptr : e.flush.get();
  TimeAttendRound(*caches, *e.pool, flush);  // warm-up: page faults, lazily built tables
  double total = 0;
  for (auto _ : state) {
    const double s = TimeAttendRound(*caches, *e.pool, flush);
    state.SetIterationTime(s);
    total += s;
  }
  const double seconds = total / static_cast<double>(state.iterations());
  if (c.format.name == "fp16") e.fp16_seconds[c.ShapeKey()] = seconds;
  const KvCache& first = *caches->seqs.front();
  const double tokens = static_cast<double>(c.ctx) * c.batch;
  const double bytes_per_token = first.BytesPerToken() / first.shape().n_layers;
  state.counters["ns_per_token"] = seconds * 1e9 / tokens;
  state.counters["GB/s"] = bytes_per_token * tokens / seconds / 1e9;
  state.counters["bits/ch"] = first.BitsPerChannel();
  state.counters["cache_MiB"] = bytes_per_token * tokens / (1 << 20);
  state.counters["ratio_vs_fp16"] = Fp16Seconds(c) / seconds;
  state.counters["stream_GB/s"] = e.stream_gbps;
}

}  // namespace
}  // namespace cqkv

int main(int argc, char** argv) {
  using namespace cqkv;
  Env& e = env();
  bool large = false;
  double max_gib = 8.0;
  std::vector<char*> rest{argv[0]};
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
      e.threads = std::atoi(argv[++i]);
    } else if (std::strcmp(argv[i], "--max-gib") == 0 && i + 1 < argc) {
      max_gib = std::atof(argv[++i]);
    } else if (std::strcmp(argv[i], "--warm") == 0) {
      e.warm = true;
    } else if (std::strcmp(argv[i], "--large") == 0) {
      large = true;
    } else {
      rest.push_back(argv[i]);
    }
  }
  int rest_argc = static_cast<int>(rest.size());
  benchmark::Initialize(&rest_argc, rest.data());
  e.pool = std::make_unique<ThreadPool>(e.threads);
  e.stream_gbps = MeasureStreamReadGBs(*e.pool);
  if (!e.warm) e.flush = std::make_unique<CacheFlusher>();
  benchmark::AddCustomContext("caches", e.warm ? "warm" : "cold (LLC flushed before each round)");
  benchmark::AddCustomContext("threads", std::to_string(e.pool->size()));
  benchmark::AddCustomContext("stream_read_GB/s", std::to_string(e.stream_gbps));
  benchmark::AddCustomContext("GB/s formula",
                              "BytesPerToken/n_layers * ctx * batch / round seconds / 1e9");

  // fp16 first in every shape, so the other formats' ratios reuse its time.
  const std::vector<AttnFormat> formats = ParseAttnFormats(
      "fp16,fp32,int4-token,int2-token,int4-channel,cq:2c8b,cq:4c8b,cq:8c8b,cq:4c4b,cq:8c4b,"
      "cq:4c8b:fs,cq:8c8b:fs,cq:4c4b:fs,cq:8c4b:fs");
  struct Shape {
    int kv_heads, ctx, batch;
  };
  std::vector<Shape> shapes = {
      {8, 1024, 1}, {8, 4096, 1}, {8, 16384, 1}, {8, 4096, 8}, {32, 4096, 1}};
  if (large) {
    shapes.clear();
    for (int kvh : {8, 32}) {
      for (int ctx : {1024, 4096, 16384, 32768, 65536, 131072}) {
        for (int b : {1, 8, 32, 64}) shapes.push_back({kvh, ctx, b});
      }
    }
  }
  for (const auto& [kvh, ctx, batch] : shapes) {
    for (const AttnFormat& f : formats) {
      Case c{ctx, batch, kvh, f};
      const double gib = EstimateCacheBytes(f, c.Shape()) * batch / (1 << 30);
      const std::string name = "attend/" + c.ShapeKey() + "/" + f.name;
      if (gib > max_gib) {
        std::fprintf(stderr, "attention_bench: skipping %s: caches would take %.1f GiB > %.1f\n",
                     name.c_str(), gib, max_gib);
        continue;
      }
      benchmark::RegisterBenchmark(name.c_str(), [c](benchmark::State& s) { BM_Attend(s, c); })
          ->UseManualTime()
          ->Unit(benchmark::kMicrosecond)
          ->MinTime(0.2);
    }
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
