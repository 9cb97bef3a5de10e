// Decode matvec throughput per stored weight type (Google Benchmark): y = W x for one token
// through MatMul's row-dot path (DotRow per row, weights decoded in registers), all types in one
// process so their ratios are comparable. Shapes: 4096 x 4096 (a LLaMA-7B projection; its F32
// form streams from memory, the quantised forms mostly from L3) and 256 x 4096 (cache-resident:
// the kernels' compute speed).
//   matvec_bench [--threads N] [google-benchmark flags]
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/dequant.h"
#include "kernels/matmul.h"
#include "util/fp16.h"

namespace cqkv {
namespace {

// Random weights of a type: quantised from N(0, 1) where cqkv has a quantiser, otherwise random
// bytes with finite fp16 scales (the block formats' values are then small integers times them).
std::vector<uint8_t> MakeWeights(DType t, int64_t rows, int64_t cols) {
  std::mt19937 rng(42);
  const int64_t row_bytes = DTypeRowBytes(t, cols);
  std::vector<uint8_t> bytes(static_cast<size_t>(row_bytes * rows));
  const bool quantisable = t == DType::kF32 || t == DType::kF16 || t == DType::kBF16 ||
                           t == DType::kQ8_0 || t == DType::kQ4_0;
  if (quantisable) {
    std::normal_distribution<float> nd;
    std::vector<float> row(static_cast<size_t>(cols));
    for (int64_t r = 0; r < rows; ++r) {
      for (auto& v : row) v = nd(rng);
      QuantizeRow(t, row.data(), cols, bytes.data() + r * row_bytes);
    }
    return bytes;
  }
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& b : bytes) b = static_cast<uint8_t>(byte(rng));
  // The fp16 scale fields (offsets per format in kernels/block_formats.h) get finite scales.
  const int64_t bb = DTypeBlockBytes(t);
  std::vector<int> halves;
  switch (t) {
    case DType::kQ4_1:
    case DType::kQ5_1:
    case DType::kQ4_K:
    case DType::kQ5_K:
      halves = {0, 2};
      break;
    case DType::kQ5_0:
    case DType::kIQ4_NL:
      halves = {0};
      break;
    case DType::kQ2_K:
      halves = {80, 82};
      break;
    case DType::kQ3_K:
      halves = {108};
      break;
    case DType::kQ6_K:
      halves = {208};
      break;
    default:
      break;
  }
  std::uniform_real_distribution<float> scale(0.001f, 0.01f);
  for (size_t b = 0; b < bytes.size(); b += static_cast<size_t>(bb)) {
    for (int off : halves) {
      const uint16_t h = F32ToF16(scale(rng));
      std::memcpy(&bytes[b + off], &h, 2);
    }
  }
  return bytes;
}

void BM_MatVec(benchmark::State& state, DType t, int64_t rows, int64_t cols, int threads) {
  const auto bytes = MakeWeights(t, rows, cols);
  const WeightMatrix w{t, rows, cols, bytes.data(), "w"};
  std::vector<float> x(static_cast<size_t>(cols), 0.5f), y(static_cast<size_t>(rows));
  ThreadPool pool(threads);
  for (auto _ : state) {
    MatMul(ConstMat(x.data(), 1, cols), w, Mat(y.data(), 1, rows), pool);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  const double n = static_cast<double>(state.iterations());
  state.counters["weights_GB/s"] =
      benchmark::Counter(n * static_cast<double>(bytes.size()) / 1e9, benchmark::Counter::kIsRate);
  state.counters["Gelem/s"] =
      benchmark::Counter(n * static_cast<double>(rows * cols) / 1e9, benchmark::Counter::kIsRate);
}

void RegisterAll(int threads) {
  const DType types[] = {DType::kF32,  DType::kF16,  DType::kQ8_0,  DType::kQ4_0, DType::kQ2_K,
                         DType::kQ3_K, DType::kQ4_K, DType::kQ5_K,  DType::kQ6_K, DType::kQ4_1,
                         DType::kQ5_0, DType::kQ5_1, DType::kIQ4_NL};
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{4096, 4096}, {256, 4096}}) {
    for (DType t : types) {
      const std::string name = "MatVec/" + std::string(DTypeName(t)) + "/" + std::to_string(rows) +
                               "x" + std::to_string(cols);
      benchmark::RegisterBenchmark(name.c_str(), BM_MatVec, t, rows, cols, threads)
          ->Unit(benchmark::kMicrosecond)
          ->UseRealTime();
    }
  }
}

}  // namespace
}  // namespace cqkv

int main(int argc, char** argv) {
  // Our own flag first; google-benchmark rejects flags it does not know.
  int threads = 1;
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    if (std::string(argv[i]) == "--threads" && i + 1 < argc) {
      threads = std::stoi(argv[++i]);
    } else {
      rest.push_back(argv[i]);
    }
  }
  int n = static_cast<int>(rest.size());
  benchmark::Initialize(&n, rest.data());
  cqkv::RegisterAll(threads);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
