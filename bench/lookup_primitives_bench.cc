// The memory primitives CQ decode attention is made of, timed alone (Google Benchmark, one
// thread): a random 16-byte table lookup added into registers (a key-score lookup serving 4 query
// heads), a random 16-byte read-modify-write (a value-histogram update), and a random 16-byte
// store alone, from tables of 16 KiB (L1-resident, the lookup path's chunk) and 64 KiB (a whole
// 8c8b head, L2). Counter time_per_access is what bounds kernels/attn_cq.cc: CQ-<c>c<b>b with head
// dim 128 costs 128/c lookups + 128/c updates per token and KV head (see reports/attention).
// BM_FastScanKeys times the fast-scan replacement of the lookups (kernels/attn_cq_fastscan.h:
// approximate scores of every token plus the exact rescoring of the range's top candidates) for
// the same 4 query heads per KV head, head dim 128, per (token, group): comparable with
// BM_Lookup's time_per_access; BM_FastScanTables the per-call table build it needs (per call).
//   lookup_primitives_bench [google-benchmark flags]
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include <hwy/highway.h>

#include "kernels/attn_cq_fastscan.h"

namespace {

namespace hn = hwy::HWY_NAMESPACE;
constexpr int64_t kTokens = 16384;
constexpr int kRow = 4;  // floats per table row: one per query head of a GQA-4 group

struct Data {
  int groups;                  // tables of 256 rows, one per group
  std::vector<uint8_t> codes;  // (kTokens, groups)
  std::vector<float> table;    // (groups, 256, kRow)
  std::vector<float> p;        // (kTokens, kRow)
  explicit Data(int table_kib)
      : groups(table_kib * 1024 / (256 * kRow * 4)),
        codes(static_cast<size_t>(kTokens) * groups),
        table(static_cast<size_t>(groups) * 256 * kRow, 0.01f),
        p(static_cast<size_t>(kTokens) * kRow, 0.5f) {
    std::mt19937 rng(1);
    for (uint8_t& c : codes) c = static_cast<uint8_t>(rng());
  }
  float* Row(int g, uint8_t code) { return table.data() + (g * 256 + code) * kRow; }
};

void Finish(benchmark::State& state, const Data& d) {
  const double accesses = static_cast<double>(state.iterations()) * kTokens * d.groups;
  // Seconds per access (printed with an SI prefix, e.g. 480p = 0.48 ns).
  state.counters["time_per_access"] =
      benchmark::Counter(accesses, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["table_KiB"] = static_cast<double>(d.table.size() * 4) / 1024;
}

void BM_Lookup(benchmark::State& state) {
  Data d(static_cast<int>(state.range(0)));
  const hn::FixedTag<float, kRow> df;
  std::vector<float> out(static_cast<size_t>(kTokens) * kRow);
  for (auto _ : state) {
    for (int64_t t = 0; t < kTokens; ++t) {
      const uint8_t* c = d.codes.data() + t * d.groups;
      auto a0 = hn::Zero(df), a1 = hn::Zero(df);
      for (int g = 0; g + 1 < d.groups; g += 2) {
        a0 = hn::Add(a0, hn::LoadU(df, d.Row(g, c[g])));
        a1 = hn::Add(a1, hn::LoadU(df, d.Row(g + 1, c[g + 1])));
      }
      hn::StoreU(hn::Add(a0, a1), df, out.data() + t * kRow);
    }
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  Finish(state, d);
}

// Random 16-byte row writes: read-modify-write (a histogram update) or the store alone.
template <bool kAccumulate>
void BM_RowWrite(benchmark::State& state) {
  Data d(static_cast<int>(state.range(0)));
  const hn::FixedTag<float, kRow> df;
  for (auto _ : state) {
    for (int64_t t = 0; t < kTokens; ++t) {
      const uint8_t* c = d.codes.data() + t * d.groups;
      const auto pv = hn::LoadU(df, d.p.data() + t * kRow);
      for (int g = 0; g < d.groups; ++g) {
        float* w = d.Row(g, c[g]);
        hn::StoreU(kAccumulate ? hn::Add(hn::LoadU(df, w), pv) : pv, df, w);
      }
    }
    benchmark::DoNotOptimize(d.table.data());
    benchmark::ClobberMemory();
  }
  Finish(state, d);
}
void BM_Update(benchmark::State& state) { BM_RowWrite<true>(state); }
void BM_StoreOnly(benchmark::State& state) { BM_RowWrite<false>(state); }

// One KV head of CQ-<c>c<b>b codes in the fast-scan layout, 4 query heads, head dim 128.
struct FastScanData {
  int c, bits, groups;
  std::vector<uint8_t> codes;
  std::vector<float> table, q;
  cqkv::CqHeadView view;
  FastScanData(int c_, int bits_) : c(c_), bits(bits_), groups(128 / c_) {
    std::mt19937 rng(2);
    std::normal_distribution<float> nd;
    codes.resize(static_cast<size_t>(kTokens) * groups * bits / 8);
    for (uint8_t& x : codes) x = static_cast<uint8_t>(rng());
    table.resize(static_cast<size_t>(groups) * c << bits);
    for (float& x : table) x = nd(rng);
    q.resize(kRow * 128);
    for (float& x : q) x = nd(rng) * 0.25f;
    view.k_codes = codes.data();
    view.n_groups = view.groups = groups;
    view.c = c;
    view.bits = bits;
    view.k_table = table.data();
  }
};

// Args: c, b.
void BM_FastScanKeys(benchmark::State& state) {
  FastScanData d(static_cast<int>(state.range(0)), static_cast<int>(state.range(1)));
  cqkv::CqFsTables t;
  cqkv::CqFsBuildTables(d.view, d.q.data(), kRow, 128, &t);
  std::vector<float> scores;
  for (auto _ : state) {
    cqkv::CqFsScores(d.view, t, 0, kTokens, &scores);
    benchmark::DoNotOptimize(scores.data());
  }
  const double accesses = static_cast<double>(state.iterations()) * kTokens * d.groups;
  state.counters["time_per_access"] =
      benchmark::Counter(accesses, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

void BM_FastScanTables(benchmark::State& state) {
  FastScanData d(static_cast<int>(state.range(0)), static_cast<int>(state.range(1)));
  cqkv::CqFsTables t;
  for (auto _ : state) {
    cqkv::CqFsBuildTables(d.view, d.q.data(), kRow, 128, &t);
    benchmark::DoNotOptimize(t.qlut.data());
  }
}

BENCHMARK(BM_Lookup)->Arg(16)->Arg(64);
BENCHMARK(BM_FastScanKeys)->Args({4, 8})->Args({8, 8})->Args({4, 4})->Args({8, 4});
BENCHMARK(BM_FastScanTables)->Args({4, 8})->Args({8, 8})->Args({4, 4})->Args({8, 4});
BENCHMARK(BM_Update)->Arg(16)->Arg(64);
BENCHMARK(BM_StoreOnly)->Arg(16)->Arg(64);

}  // namespace

BENCHMARK_MAIN();
