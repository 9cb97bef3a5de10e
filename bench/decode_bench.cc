// End-to-end decode throughput (Google Benchmark) of the whole model with a long KV cache: B
// sequences, each with its own cache pre-filled with T random tokens per layer (appended
// directly: far faster than prefill, and attention speed depends on the cache, not its values),
// decoded in turn, one token each per step. Reports tok/s, the caches' bytes (BytesPerToken, and
// the heap they really took: kv_heap_MiB), and the process RSS (after filling, and the peak so
// far; run one case per process with --benchmark_filter for a per-format peak).
//   decode_bench [--threads N] [--shared DIR] [--full] [--cq SPEC] [--max-gib G] [gbench flags]
// Models: cq-tiny (../shared/models/cq-tiny/model.bin, skipped when absent) and a synthetic
// 2-layer 7B-shaped model with 8 KV heads (Mistral-7B GQA). Default grid: T in {4k, 16k, 32k} at
// B = 1 plus a few B = 8 cases (about a minute on 2 cores); --full runs T in {4k, 16k, 32k} x
// B in {1, 8, 32} (the 7B-shaped B = 32 cases fill for many minutes).
#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "bench/harness/attn_bench.h"
#include "loader/loader.h"
#include "model/fingerprint.h"
#include "model/kv_shape.h"
#include "model/llama.h"
#include "model/synthetic.h"
#include "util/process_stats.h"

namespace cqkv {
namespace {

struct Env {
  int threads = 2;
  std::unique_ptr<ThreadPool> pool;
};
Env& env() {
  static Env e;
  return e;
}

// A model built on first use, so a process that runs only cq-tiny cases (one case per process,
// bench/decode_report.sh) never holds the 7B-shaped weights and its peak RSS is its own.
struct LazyModel {
  ModelConfig config;
  std::function<std::unique_ptr<Model>()> make;
  std::unique_ptr<Model> model;
  const Model& Get() {
    if (!model) model = make();
    return *model;
  }
};

struct Case {
  LazyModel* model;
  AttnFormat format;
  int ctx;    // tokens cached per sequence before timing
  int batch;  // sequences
  int steps;  // timed decode steps (each: one token for every sequence)
  // One sequence's cache shape: the model's, with room for the timed steps and a warm-up step.
  // The fingerprint is only known once the model is built (random codebooks copy it).
  KvShape Shape() const {
    KvShape s = KvShapeFor(model->config, ctx + steps + 1);
    if (model->model) s.model_fingerprint = ModelFingerprint(*model->model);
    return s;
  }
};

void BM_Decode(benchmark::State& state, const Case& c) {
  ThreadPool& pool = *env().pool;
  const Model& model = c.model->Get();
  LlamaForward fwd(model, pool);
  const double heap0 = HeapInUseBytes();
  const KvShape shape = c.Shape();
  std::vector<std::unique_ptr<KvCache>> caches(static_cast<size_t>(c.batch));
  // One set of codebooks for the batch, as a server would hold them.
  caches[0] = MakeBenchCache(c.format, shape, 1);
  for (int b = 1; b < c.batch; ++b) caches[b] = caches[0]->NewSibling();
  pool.ParallelFor(c.batch, 1, [&](int64_t begin, int64_t end, int) {
    for (int64_t b = begin; b < end; ++b) FillRandom(*caches[b], c.ctx, 7 + b);
  });
  const double heap_filled = HeapInUseBytes();
  const double rss_filled = CurrentRssBytes();
  std::vector<float> logits(static_cast<size_t>(model.config.vocab_size));
  const Mat out(logits.data(), 1, model.config.vocab_size);
  int32_t tok = 1;
  auto step = [&] {
    for (auto& cache : caches) fwd.Forward(std::span<const int32_t>(&tok, 1), *cache, out);
    tok = (tok + 1) % model.config.vocab_size;
  };
  step();  // warm-up: scratch buffers, page faults of the weights
  for (auto _ : state) step();
  const double kv_bytes = caches[0]->BytesPerToken() * c.ctx * c.batch;
  state.counters["tok/s"] = benchmark::Counter(static_cast<double>(state.iterations()) * c.batch,
                                               benchmark::Counter::kIsRate);
  state.counters["kv_MiB"] = kv_bytes / (1 << 20);
  state.counters["bits/ch"] = caches[0]->BitsPerChannel();
  state.counters["kv_heap_MiB"] = (heap_filled - heap0) / (1 << 20);
  state.counters["rss_MiB"] = rss_filled / (1 << 20);
  state.counters["peak_rss_MiB"] = PeakRssBytes() / (1 << 20);
}

struct Grid {
  std::vector<std::pair<int, int>> ctx_batch;
  int steps;
};

void Register(const std::string& model_name, LazyModel* m, const Grid& grid,
              const std::vector<AttnFormat>& formats, double max_gib) {
  for (const auto& [ctx, batch] : grid.ctx_batch) {
    for (const AttnFormat& f : formats) {
      const Case c{m, f, ctx, batch, grid.steps};
      const std::string name =
          fmt::format("decode/{}/ctx{}/b{}/{}", model_name, ctx, batch, f.name);
      const double gib = EstimateCacheBytes(f, c.Shape()) * batch / (1 << 30);
      if (gib > max_gib) {
        std::fprintf(stderr, "decode_bench: skipping %s: caches would take %.1f GiB > %.1f\n",
                     name.c_str(), gib, max_gib);
        continue;
      }
      benchmark::RegisterBenchmark(name.c_str(), [c](benchmark::State& s) { BM_Decode(s, c); })
          ->Iterations(grid.steps)  // fixed: the cache has room for these
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
    }
  }
}

}  // namespace
}  // namespace cqkv

int main(int argc, char** argv) {
  using namespace cqkv;
  Env& e = env();
  std::string shared = std::string(CQKV_SOURCE_DIR_BENCH) + "/../shared";
  std::string cq = "cq:8c8b";
  bool full = false;
  double max_gib = 8.0;
  std::vector<char*> rest{argv[0]};
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
      e.threads = std::atoi(argv[++i]);
    } else if (std::strcmp(argv[i], "--shared") == 0 && i + 1 < argc) {
      shared = argv[++i];
    } else if (std::strcmp(argv[i], "--cq") == 0 && i + 1 < argc) {
      cq = argv[++i];
    } else if (std::strcmp(argv[i], "--max-gib") == 0 && i + 1 < argc) {
      max_gib = std::atof(argv[++i]);
    } else if (std::strcmp(argv[i], "--full") == 0) {
      full = true;
    } else {
      rest.push_back(argv[i]);
    }
  }
  int rest_argc = static_cast<int>(rest.size());
  benchmark::Initialize(&rest_argc, rest.data());
  e.pool = std::make_unique<ThreadPool>(e.threads);
  benchmark::AddCustomContext("threads", std::to_string(e.pool->size()));
  benchmark::AddCustomContext("kv_MiB", "BytesPerToken (all layers) * ctx * batch");

  // CQ first in each case: the peak RSS then rises visibly when the fp16 case follows.
  const std::vector<AttnFormat> formats = ParseAttnFormats(cq + ",fp16");
  Grid full_grid{{}, 4};
  for (int ctx : {4096, 16384, 32768}) {
    for (int b : {1, 8, 32}) full_grid.ctx_batch.emplace_back(ctx, b);
  }
  // cq-tiny steps take milliseconds: more of them for a stable rate.
  const Grid tiny_grid = full ? Grid{full_grid.ctx_batch, 16}
                              : Grid{{{4096, 1}, {16384, 1}, {32768, 1}, {4096, 8}, {32768, 8}}, 8};
  const Grid synth_grid =
      full ? full_grid : Grid{{{4096, 1}, {16384, 1}, {32768, 1}, {4096, 8}}, 3};

  static LazyModel tiny, synth;
  const std::string tiny_path = shared + "/models/cq-tiny/model.bin";
  if (std::filesystem::exists(tiny_path)) {
    tiny.config = LoadModel(tiny_path)->config;  // mapped, not read: cheap to load twice
    tiny.make = [tiny_path] { return LoadModel(tiny_path); };
    Register("cq-tiny", &tiny, tiny_grid, formats, max_gib);
  } else {
    std::fprintf(stderr, "decode_bench: %s absent, skipping cq-tiny\n", tiny_path.c_str());
  }
  // Two layers keep the fp32 weights at ~1.4 GB; kv heads 8 as in Mistral-7B.
  synth.config = SevenBShape(2, 8);
  synth.make = [] { return MakeSyntheticModel(synth.config, 1, 0.02f); };
  Register("7B-2L-kvh8", &synth, synth_grid, formats, max_gib);

  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
