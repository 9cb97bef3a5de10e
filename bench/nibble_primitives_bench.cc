// What bounds value histograms held in registers (reports/attention/nibble_values.md): hand-written
// AVX-512 variants of the NibbleSums inner loop against the L1 histogram read-modify-write they
// would replace, on one KV head's 16 code bytes per token (8c8b: 16 groups, 32 nibble streams),
// 4 query heads, 4096 tokens in 256-token calls, warm, one thread. Counter ns_per_token is per
// token and KV head. Variants (per token, stream and head unless noted):
//   KMaskAdd32: k-mask from 1 << nibble (kmovw), one merge-masked 32-bit add
//   AndAdd32:   one-hot row loaded from a table, AND with the weight, plain 32-bit add
//   KMaskAdd16: 16-bit lanes, two heads per vector (one masked add per two heads), widened to 32
//               bits every 16 tokens (weights must then stay below 2^12)
//   HistRmw:    per token and group one 16-byte load + add + store into a (group, code, 4 heads)
//               fp32 table (what CqAttend's histogram path does per value group)
// Machines without AVX-512BW skip the variants.
//   nibble_primitives_bench [google-benchmark flags]
#include <benchmark/benchmark.h>
#include <immintrin.h>

#include <cstdint>
#include <random>
#include <vector>

namespace {

constexpr int64_t kTokens = 4096, kCall = 256, kBytes = 16, kStreams = 2 * kBytes;

#define CQKV_AVX512 __attribute__((target("avx512f,avx512bw"), noinline))

// S streams per chunk, 4 heads, accumulators in registers.
template <int S>
CQKV_AVX512 void KMaskAdd32(const uint8_t* rows, const uint32_t* w, uint32_t* out) {
  for (int s0 = 0; s0 < kStreams; s0 += S) {
    __m512i a[4 * S];
    for (auto& x : a) x = _mm512_setzero_si512();
    for (int64_t i = 0; i < kCall; ++i) {
      __m512i wv[4];
      for (int h = 0; h < 4; ++h) wv[h] = _mm512_set1_epi32(static_cast<int>(w[h * kCall + i]));
      const uint8_t* row = rows + i * kBytes + s0 / 2;
      for (int s = 0; s < S; ++s) {
        const __mmask16 m = _cvtu32_mask16(1u << ((row[s >> 1] >> ((s & 1) * 4)) & 15u));
        for (int h = 0; h < 4; ++h)
          a[h * S + s] = _mm512_mask_add_epi32(a[h * S + s], m, a[h * S + s], wv[h]);
      }
    }
    for (int k = 0; k < 4 * S; ++k) {
      uint32_t* o = out + (s0 * 4 + k) * 16;
      _mm512_storeu_si512(o, _mm512_add_epi32(_mm512_loadu_si512(o), a[k]));
    }
  }
}

alignas(64) uint32_t kOneHot[16][16];

template <int S>
CQKV_AVX512 void AndAdd32(const uint8_t* rows, const uint32_t* w, uint32_t* out) {
  for (int s0 = 0; s0 < kStreams; s0 += S) {
    __m512i a[4 * S];
    for (auto& x : a) x = _mm512_setzero_si512();
    for (int64_t i = 0; i < kCall; ++i) {
      __m512i wv[4];
      for (int h = 0; h < 4; ++h) wv[h] = _mm512_set1_epi32(static_cast<int>(w[h * kCall + i]));
      const uint8_t* row = rows + i * kBytes + s0 / 2;
      for (int s = 0; s < S; ++s) {
        const __m512i oh = _mm512_load_si512(kOneHot[(row[s >> 1] >> ((s & 1) * 4)) & 15u]);
        for (int h = 0; h < 4; ++h)
          a[h * S + s] = _mm512_add_epi32(a[h * S + s], _mm512_and_si512(oh, wv[h]));
      }
    }
    for (int k = 0; k < 4 * S; ++k) {
      uint32_t* o = out + (s0 * 4 + k) * 16;
      _mm512_storeu_si512(o, _mm512_add_epi32(_mm512_loadu_si512(o), a[k]));
    }
  }
}

// Lanes 2v and 2v + 1 of vector j: bin v of heads 2j and 2j + 1.
template <int S>
CQKV_AVX512 void KMaskAdd16(const uint8_t* rows, const uint16_t* w, uint32_t* out) {
  for (int s0 = 0; s0 < kStreams; s0 += S) {
    __m512i wide[4 * S];
    for (auto& x : wide) x = _mm512_setzero_si512();
    for (int64_t i0 = 0; i0 < kCall; i0 += 16) {
      __m512i a[2 * S];
      for (auto& x : a) x = _mm512_setzero_si512();
      for (int64_t i = i0; i < i0 + 16; ++i) {
        const __m512i w0 =
            _mm512_set1_epi32(static_cast<int>(w[i * 4] | (uint32_t{w[i * 4 + 1]} << 16)));
        const __m512i w1 =
            _mm512_set1_epi32(static_cast<int>(w[i * 4 + 2] | (uint32_t{w[i * 4 + 3]} << 16)));
        const uint8_t* row = rows + i * kBytes + s0 / 2;
        for (int s = 0; s < S; ++s) {
          const __mmask32 m = _cvtu32_mask32(3u << (2 * ((row[s >> 1] >> ((s & 1) * 4)) & 15u)));
          a[2 * s] = _mm512_mask_add_epi16(a[2 * s], m, a[2 * s], w0);
          a[2 * s + 1] = _mm512_mask_add_epi16(a[2 * s + 1], m, a[2 * s + 1], w1);
        }
      }
      // 32-bit lane v of a[k] holds bin v of two heads, one per 16-bit half.
      const __m512i low = _mm512_set1_epi32(0xffff);
      for (int k = 0; k < 2 * S; ++k) {
        wide[2 * k] = _mm512_add_epi32(wide[2 * k], _mm512_and_si512(a[k], low));
        wide[2 * k + 1] = _mm512_add_epi32(
            wide[2 * k + 1], _mm512_maskz_srli_epi32(static_cast<__mmask16>(0xffff), a[k], 16));
      }
    }
    for (int k = 0; k < 4 * S; ++k) {
      uint32_t* o = out + (s0 * 4 + k) * 16;
      _mm512_storeu_si512(o, _mm512_add_epi32(_mm512_loadu_si512(o), wide[k]));
    }
  }
}

CQKV_AVX512 void HistRmw(const uint8_t* rows, const float* w, float* hist) {
  for (int64_t i = 0; i < kCall; ++i) {
    const __m128 wv = _mm_loadu_ps(w + i * 4);
    const uint8_t* row = rows + i * kBytes;
    for (int g = 0; g < kBytes; ++g) {
      float* h = hist + (g * 256 + row[g]) * 4;
      _mm_storeu_ps(h, _mm_add_ps(_mm_loadu_ps(h), wv));
    }
  }
}

enum class Variant { kKMaskAdd32, kAndAdd32, kKMaskAdd16, kHistRmw };

template <int S>
void Run(benchmark::State& state, Variant v) {
  if (!__builtin_cpu_supports("avx512bw")) {
    state.SkipWithError("no AVX-512BW");
    return;
  }
  for (int k = 0; k < 16; ++k) {
    for (int j = 0; j < 16; ++j) kOneHot[k][j] = k == j ? ~0u : 0u;
  }
  std::mt19937 rng(1);
  std::vector<uint8_t> rows(static_cast<size_t>(kTokens * kBytes));
  for (auto& b : rows) b = static_cast<uint8_t>(rng());
  std::vector<uint32_t> w32(4 * kCall, 1000), out(4 * kStreams * 16);
  std::vector<uint16_t> w16(4 * kCall, 1000);
  std::vector<float> wf(4 * kCall, 0.5f), hist(kBytes * 256 * 4);
  for (auto _ : state) {
    for (int64_t b = 0; b < kTokens; b += kCall) {
      const uint8_t* r = rows.data() + b * kBytes;
      switch (v) {
        case Variant::kKMaskAdd32:
          KMaskAdd32<S>(r, w32.data(), out.data());
          break;
        case Variant::kAndAdd32:
          AndAdd32<S>(r, w32.data(), out.data());
          break;
        case Variant::kKMaskAdd16:
          KMaskAdd16<S>(r, w16.data(), out.data());
          break;
        case Variant::kHistRmw:
          HistRmw(r, wf.data(), hist.data());
          break;
      }
    }
    benchmark::DoNotOptimize(out.data());
    benchmark::DoNotOptimize(hist.data());
  }
  state.counters["ns_per_token"] = benchmark::Counter(
      static_cast<double>(kTokens) * 1e-9,
      benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

void BM_KMaskAdd32(benchmark::State& s) { Run<4>(s, Variant::kKMaskAdd32); }
void BM_AndAdd32(benchmark::State& s) { Run<4>(s, Variant::kAndAdd32); }
void BM_KMaskAdd16(benchmark::State& s) { Run<4>(s, Variant::kKMaskAdd16); }
void BM_HistRmw(benchmark::State& s) { Run<4>(s, Variant::kHistRmw); }
BENCHMARK(BM_KMaskAdd32);
BENCHMARK(BM_AndAdd32);
BENCHMARK(BM_KMaskAdd16);
BENCHMARK(BM_HistRmw);

}  // namespace

BENCHMARK_MAIN();
