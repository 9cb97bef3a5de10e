// Prefill and decode throughput of the forward pass (Google Benchmark), on a synthetic layer of
// LLaMA-2-7B dimensions and on cq-tiny (F32, and llama.cpp's Q4_K_M / Q2_K GGUFs of it) when
// ../shared is present. Every figure has its bound beside it, measured in the same process: BLAS
// sgemm peak for prefill (GFLOP/s) and a STREAM-like read bandwidth for decode (GB/s of weights
// streamed per token).
//   forward_bench [--threads N] [--shared DIR] [google-benchmark flags]
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "loader/loader.h"
#include "model/llama.h"
#include "model/synthetic.h"

namespace cqkv {
namespace {

using Clock = std::chrono::steady_clock;

// Best-of-3 multi-threaded OpenBLAS sgemm on square 2048 matrices: the GEMM ceiling.
double MeasureBlasPeakGflops(int threads) {
  const int n = 2048;
  std::vector<float> a(size_t{1} * n * n, 0.5f), b(a.size(), 0.25f), c(a.size());
  openblas_set_num_threads(threads);
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    const auto t0 = Clock::now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0f, a.data(), n, b.data(), n,
                0.0f, c.data(), n);
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    best = std::max(best, 2.0 * n * n * n / s / 1e9);
  }
  openblas_set_num_threads(1);  // MatMul partitions rows itself
  return best;
}

// Best-of-5 multi-threaded sum over a 1 GiB buffer: the read bandwidth a decode step can use.
double MeasureReadBandwidthGBs(ThreadPool& pool) {
  const size_t n = size_t{1} << 28;  // floats
  std::vector<float> buf(n, 1.0f);
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    std::vector<double> partial(static_cast<size_t>(pool.size()), 0.0);
    const auto t0 = Clock::now();
    pool.ParallelFor(static_cast<int64_t>(n), 1 << 20, [&](int64_t b, int64_t e, int tid) {
      float s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
      int64_t i = b;
      for (; i + 8 <= e; i += 8) {
        s0 += buf[i];
        s1 += buf[i + 1];
        s2 += buf[i + 2];
        s3 += buf[i + 3];
        s4 += buf[i + 4];
        s5 += buf[i + 5];
        s6 += buf[i + 6];
        s7 += buf[i + 7];
      }
      for (; i < e; ++i) s0 += buf[i];
      partial[tid] = s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7;
    });
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    benchmark::DoNotOptimize(partial);
    best = std::max(best, n * sizeof(float) / s / 1e9);
  }
  return best;
}

double MatrixBytes(const WeightMatrix& w) {
  return static_cast<double>(DTypeRowBytes(w.type, w.cols) * w.rows);
}

double LayerWeightBytes(const Model& m) {
  double bytes = 0;
  for (const auto& l : m.weights.layers) {
    for (const WeightMatrix* w : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_down, &l.w_up}) {
      bytes += MatrixBytes(*w);
    }
  }
  return bytes;
}

// Every weight byte a decode step streams: all layers plus the classifier.
double WeightBytes(const Model& m) { return LayerWeightBytes(m) + MatrixBytes(m.weights.output); }

// Matmul FLOPs of a prefill call over n tokens that asks for the last token's logits only: the
// layers run for every token, the classifier once. Synthetic models are F32 (4 bytes/weight).
double PrefillFlops(const Model& m, int n_tokens) {
  return 2.0 * (LayerWeightBytes(m) * n_tokens + MatrixBytes(m.weights.output)) / 4.0;
}

struct Env {
  int threads = 2;
  double blas_peak = 0;
  double read_gbs = 0;
};

// Prefill: one forward call over `n_tokens` fresh tokens.
void BM_Prefill(benchmark::State& state, const Model* m, const Env* env, int n_tokens) {
  ThreadPool pool(env->threads);
  LlamaForward fwd(*m, pool);
  auto cache = MakeCacheFor(*m, "fp16", n_tokens);
  std::vector<int32_t> ids(static_cast<size_t>(n_tokens));
  for (int i = 0; i < n_tokens; ++i) ids[i] = (i * 7919 + 1) % m->config.vocab_size;
  std::vector<float> logits(static_cast<size_t>(m->config.vocab_size));
  for (auto _ : state) {
    cache->Clear();
    fwd.Forward(ids, *cache, Mat(logits.data(), 1, m->config.vocab_size));
  }
  const double tok_s = static_cast<double>(n_tokens) * state.iterations();
  state.counters["tok/s"] = benchmark::Counter(tok_s, benchmark::Counter::kIsRate);
  const double flops = PrefillFlops(*m, n_tokens) * state.iterations();
  state.counters["GFLOP/s"] = benchmark::Counter(flops / 1e9, benchmark::Counter::kIsRate);
  state.counters["blas_peak_GFLOP/s"] = env->blas_peak;
}

// Decode: one token at a time after a `ctx`-token prompt, so attention reads a real cache.
void BM_Decode(benchmark::State& state, const Model* m, const Env* env, int ctx) {
  ThreadPool pool(env->threads);
  LlamaForward fwd(*m, pool);
  const int steps_max = 1 << 16;
  auto cache = MakeCacheFor(*m, "fp16", ctx + steps_max);
  std::vector<int32_t> prompt(static_cast<size_t>(ctx));
  for (int i = 0; i < ctx; ++i) prompt[i] = (i * 31 + 7) % m->config.vocab_size;
  std::vector<float> logits(static_cast<size_t>(m->config.vocab_size));
  const Mat out(logits.data(), 1, m->config.vocab_size);
  fwd.Forward(prompt, *cache, out);
  int32_t tok = 1;
  for (auto _ : state) {
    if (cache->tokens(0) >= ctx + steps_max) state.SkipWithError("decode bench ran out of cache");
    fwd.Forward(std::span<const int32_t>(&tok, 1), *cache, out);
    tok = (tok + 1) % m->config.vocab_size;
  }
  const double n = static_cast<double>(state.iterations());
  state.counters["tok/s"] = benchmark::Counter(n, benchmark::Counter::kIsRate);
  state.counters["weight_GB/s"] =
      benchmark::Counter(WeightBytes(*m) * n / 1e9, benchmark::Counter::kIsRate);
  state.counters["stream_GB/s"] = env->read_gbs;
}

}  // namespace
}  // namespace cqkv

int main(int argc, char** argv) {
  using namespace cqkv;
  static Env env;
  std::string shared = std::string(CQKV_SOURCE_DIR_BENCH) + "/../shared";
  std::vector<char*> rest{argv[0]};
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
      env.threads = std::atoi(argv[++i]);
    } else if (std::strcmp(argv[i], "--shared") == 0 && i + 1 < argc) {
      shared = argv[++i];
    } else {
      rest.push_back(argv[i]);
    }
  }
  int rest_argc = static_cast<int>(rest.size());
  benchmark::Initialize(&rest_argc, rest.data());
  {
    ThreadPool pool(env.threads);
    env.blas_peak = MeasureBlasPeakGflops(env.threads);
    env.read_gbs = MeasureReadBandwidthGBs(pool);
  }
  benchmark::AddCustomContext("threads", std::to_string(env.threads));
  benchmark::AddCustomContext("blas_peak_GFLOP/s", std::to_string(env.blas_peak));
  benchmark::AddCustomContext("stream_read_GB/s", std::to_string(env.read_gbs));

  static auto layer7b = MakeSyntheticModel(SevenBShape(1), 1, 0.02f);
  benchmark::RegisterBenchmark("prefill/7B-layer/512", BM_Prefill, layer7b.get(), &env, 512)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  benchmark::RegisterBenchmark("decode/7B-layer/ctx512", BM_Decode, layer7b.get(), &env, 512)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();

  // cq-tiny as F32 (llama2.c) and as llama.cpp's K-quant GGUFs: the same model per weight type.
  static std::vector<std::unique_ptr<Model>> tiny;
  for (const auto& [file, label] : {std::pair<std::string, std::string>{"model.bin", "cq-tiny"},
                                    {"cq-tiny.Q4_K_M.gguf", "cq-tiny-Q4_K_M"},
                                    {"cq-tiny.Q2_K.gguf", "cq-tiny-Q2_K"}}) {
    const std::string path = shared + "/models/cq-tiny/" + file;
    if (!std::filesystem::exists(path)) {
      std::fprintf(stderr, "forward_bench: %s absent, skipping it\n", path.c_str());
      continue;
    }
    const Model* m = tiny.emplace_back(LoadModel(path)).get();
    benchmark::RegisterBenchmark(("prefill/" + label + "/256").c_str(), BM_Prefill, m, &env, 255)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
    benchmark::RegisterBenchmark(("decode/" + label + "/ctx128").c_str(), BM_Decode, m, &env, 128)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
