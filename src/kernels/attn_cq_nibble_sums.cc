// Highway per-target nibble histograms of kernels/attn_cq_nibble.h (NibbleSums, NibbleSumsFixed)
// and their scalar definitions.
//
// A stream's 16 bins fill one 512-bit vector of 32-bit lanes (two on 256-bit targets), so per
// token, stream and head the weight is broadcast and added under the mask 1 << nibble into a
// register accumulator; the mask is shared by the GQA heads of the KV head. Streams are taken a
// chunk at a time so heads x streams accumulators stay in registers, and the token loop runs
// inside the chunk. fp32 lanes keep the exact sums; 32-bit integer lanes (fixed-point weights)
// were tried for the integer units' throughput (reports/attention/nibble_values.md).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#ifndef HWY_DISABLED_TARGETS
#define HWY_DISABLED_TARGETS (HWY_SSSE3 | HWY_SSE4 | HWY_AVX3_DL)
#endif

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/attn_cq_nibble_sums.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
// Must come after foreach_target.h.
#include <hwy/highway.h>

#include "kernels/attn_cq_nibble.h"
#include "util/error.h"

#ifndef CQKV_KERNELS_ATTN_CQ_NIBBLE_SUMS_HELPERS_
#define CQKV_KERNELS_ATTN_CQ_NIBBLE_SUMS_HELPERS_
namespace cqkv {
namespace {

constexpr float kFixedOne = 8388608.0f;  // 2^23: weight 1 in fixed point
constexpr int64_t kFixedMaxTokens = 256;

// Little-endian bits 1 << v, so a vector of bins [8r, 8r + 8) reads its mask at byte r.
struct BinMasks {
  uint8_t bytes[16][8] = {};
  constexpr BinMasks() {
    for (int v = 0; v < 16; ++v) bytes[v][v / 8] = static_cast<uint8_t>(1u << (v % 8));
  }
};
constexpr BinMasks kBinMasks;

inline uint32_t FixedWeight(float p) {
  return static_cast<uint32_t>(std::lrintf(std::clamp(p, 0.0f, 1.0f) * kFixedOne));
}

}  // namespace
}  // namespace cqkv
#endif  // CQKV_KERNELS_ATTN_CQ_NIBBLE_SUMS_HELPERS_

HWY_BEFORE_NAMESPACE();
namespace cqkv {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

namespace {

// acc + w where mask m is set: one merge-masked add on AVX-512 (Highway 1.0 has no MaskedAddOr,
// and IfThenElse over Add may compile to an add and a blend).
template <class D, class V, class M>
HWY_INLINE V MaskedAdd(D d, M m, V acc, V w) {
#if HWY_TARGET == HWY_AVX3
  if constexpr (hn::MaxLanes(d) == 16 && sizeof(hn::TFromD<D>) == 4) {
    if constexpr (hwy::IsFloat<hn::TFromD<D>>()) {
      return V{_mm512_mask_add_ps(acc.raw, m.raw, acc.raw, w.raw)};
    } else {
      return V{_mm512_mask_add_epi32(acc.raw, m.raw, acc.raw, w.raw)};
    }
  }
#endif
  (void)d;
  return hn::IfThenElse(m, hn::Add(acc, w), acc);
}

// The mask of bins [r * N, r * N + N) holding bin v: on AVX-512 a k-register move of 1 << v
// (a load from a table costs more there); elsewhere a mask load from kBinMasks.
template <int N, class D>
HWY_INLINE auto BinMask(D d, uint32_t v, int r) {
#if HWY_TARGET == HWY_AVX3
  if constexpr (N == 16) {
    (void)d;
    (void)r;
    return hn::Mask512<hn::TFromD<D>>{_cvtu32_mask16(1u << v)};
  }
#endif
  return hn::LoadMaskBits(d, kBinMasks.bytes[v] + r * N / 8);
}

// H heads x S streams (from s0, even) x R vectors of 16 / R bins: per token H broadcasts, per
// stream one mask load per vector and H masked adds. w: weights (heads, n) of the lane type.
template <int H, int S, int R, class D, typename T>
HWY_INLINE void ChunkSums(D d, const uint8_t* rows, int64_t row_stride, int s0, int64_t n,
                          const T* w, int64_t w_stride, T* out, int streams) {
  using V = hn::Vec<D>;
  constexpr int N = 16 / R;
  V acc[H * S * R];
  for (int k = 0; k < H * S * R; ++k) acc[k] = hn::Zero(d);
  const uint8_t* col = rows + s0 / 2;
  for (int64_t i = 0; i < n; ++i) {
    V wv[H];
    for (int h = 0; h < H; ++h) wv[h] = hn::Set(d, w[h * w_stride + i]);
    const uint8_t* row = col + i * row_stride;
    for (int s = 0; s < S; ++s) {
      const uint32_t nib = (row[s >> 1] >> ((s & 1) * 4)) & 15u;
      for (int r = 0; r < R; ++r) {
        const auto m = BinMask<N>(d, nib, r);
        for (int h = 0; h < H; ++h) {
          acc[(h * S + s) * R + r] = MaskedAdd(d, m, acc[(h * S + s) * R + r], wv[h]);
        }
      }
    }
  }
  for (int h = 0; h < H; ++h) {
    for (int s = 0; s < S; ++s) {
      for (int r = 0; r < R; ++r) {
        T* o = out + (int64_t{h} * streams + s0 + s) * 16 + r * N;
        hn::StoreU(hn::Add(hn::LoadU(d, o), acc[(h * S + s) * R + r]), d, o);
      }
    }
  }
}

template <int H, class D, typename T>
HWY_INLINE void HeadSums(D d, const uint8_t* rows, int64_t row_stride, int streams, int64_t n,
                         const T* w, int64_t w_stride, T* out) {
  // AVX-512: one vector per stream, 4 streams x 4 heads = 16 accumulators of 32 registers; 256-bit
  // targets: two vectors per stream, 2 streams x 4 heads = 16 of 16 (spills are cheap loads).
  constexpr int R = hn::MaxLanes(d) >= 16 ? 1 : 2;
  constexpr int S = R == 1 ? 4 : 2;
  int s0 = 0;
  for (; s0 + S <= streams; s0 += S) {
    ChunkSums<H, S, R>(d, rows, row_stride, s0, n, w, w_stride, out, streams);
  }
  for (; s0 < streams; s0 += 2) {
    ChunkSums<H, 2, R>(d, rows, row_stride, s0, n, w, w_stride, out, streams);
  }
}

template <class D, typename T>
void AllSums(D d, const uint8_t* rows, int64_t row_stride, int streams, int64_t n, const T* w,
             int64_t w_stride, int heads, T* out) {
  for (int h0 = 0; h0 < heads; h0 += 4) {
    const T* wh = w + h0 * w_stride;
    T* oh = out + int64_t{h0} * streams * 16;
    switch (std::min(4, heads - h0)) {
      case 1:
        HeadSums<1>(d, rows, row_stride, streams, n, wh, w_stride, oh);
        break;
      case 2:
        HeadSums<2>(d, rows, row_stride, streams, n, wh, w_stride, oh);
        break;
      case 3:
        HeadSums<3>(d, rows, row_stride, streams, n, wh, w_stride, oh);
        break;
      default:
        HeadSums<4>(d, rows, row_stride, streams, n, wh, w_stride, oh);
        break;
    }
  }
}

}  // namespace

void NibbleSumsImpl(const uint8_t* rows, int64_t row_stride, int64_t row_bytes, int64_t n,
                    const float* p, int64_t p_stride, int heads, float* sums) {
  const hn::ScalableTag<float> d;
  // Masks load N / 8 bytes: targets under 8 lanes use the scalar definition.
  if (hn::Lanes(d) < 8)
    return NibbleSumsRef(rows, row_stride, row_bytes, n, p, p_stride, heads, sums);
  const hn::CappedTag<float, 16> dc;
  AllSums(dc, rows, row_stride, static_cast<int>(2 * row_bytes), n, p, p_stride, heads, sums);
}

void NibbleSumsFixedImpl(const uint8_t* rows, int64_t row_stride, int64_t row_bytes, int64_t n,
                         const float* p, int64_t p_stride, int heads, float* sums) {
  const hn::ScalableTag<float> d;
  if (hn::Lanes(d) < 8) {
    return NibbleSumsFixedRef(rows, row_stride, row_bytes, n, p, p_stride, heads, sums);
  }
  const hn::CappedTag<float, 16> df;
  const hn::RebindToUnsigned<decltype(df)> du;
  const hn::RebindToSigned<decltype(df)> di;
  const int streams = static_cast<int>(2 * row_bytes);
  thread_local std::vector<uint32_t> w, out;
  w.resize(static_cast<size_t>(heads * n + hn::Lanes(df)));
  out.assign(static_cast<size_t>(heads) * streams * 16, 0u);
  // Weights to fixed point: clamp to [0, 1], scale, round to nearest (ties to even, as lrintf).
  const auto one = hn::Set(df, kFixedOne);
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  for (int h = 0; h < heads; ++h) {
    const float* ph = p + h * p_stride;
    uint32_t* wh = w.data() + h * n;
    int64_t i = 0;
    for (; i + N <= n; i += N) {
      const auto x = hn::Min(hn::Max(hn::LoadU(df, ph + i), hn::Zero(df)), hn::Set(df, 1.0f));
      hn::StoreU(hn::BitCast(du, hn::NearestInt(hn::Mul(x, one))), du, wh + i);
    }
    for (; i < n; ++i) wh[i] = FixedWeight(ph[i]);
  }
  AllSums(du, rows, row_stride, streams, n, w.data(), n, heads, out.data());
  // Sums <= 2^31 are exact in uint32; to fp32 (one rounding) and back to weight units.
  const auto inv = hn::Set(df, 1.0f / kFixedOne);
  const int64_t total = int64_t{heads} * streams * 16;
  for (int64_t k = 0; k < total; k += N) {
    const auto u = hn::LoadU(du, out.data() + k);
    // Lanes < 2^31 convert as signed; 2^31 itself (256 weights of 1 in one bin) is fixed up.
    const auto big = hn::Eq(u, hn::Set(du, 0x80000000u));
    auto f = hn::ConvertTo(df, hn::BitCast(di, u));
    f = hn::IfThenElse(hn::RebindMask(df, big), hn::Set(df, 2147483648.0f), f);
    hn::StoreU(hn::MulAdd(f, inv, hn::LoadU(df, sums + k)), df, sums + k);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace cqkv
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace cqkv {

HWY_EXPORT(NibbleSumsImpl);
HWY_EXPORT(NibbleSumsFixedImpl);

void NibbleSums(const uint8_t* rows, int64_t row_stride, int64_t row_bytes, int64_t n,
                const float* p, int64_t p_stride, int heads, float* sums) {
  HWY_DYNAMIC_DISPATCH(NibbleSumsImpl)(rows, row_stride, row_bytes, n, p, p_stride, heads, sums);
}

void NibbleSumsRef(const uint8_t* rows, int64_t row_stride, int64_t row_bytes, int64_t n,
                   const float* p, int64_t p_stride, int heads, float* sums) {
  const int64_t streams = 2 * row_bytes;
  // Each bin's weights summed from zero in token order, then added to sums (as the vector code).
  std::vector<float> bins(static_cast<size_t>(streams * 16));
  for (int h = 0; h < heads; ++h) {
    std::fill(bins.begin(), bins.end(), 0.0f);
    for (int64_t i = 0; i < n; ++i) {
      const float w = p[h * p_stride + i];
      const uint8_t* row = rows + i * row_stride;
      for (int64_t s = 0; s < streams; ++s)
        bins[s * 16 + ((row[s >> 1] >> ((s & 1) * 4)) & 15)] += w;
    }
    for (int64_t k = 0; k < streams * 16; ++k) sums[h * streams * 16 + k] += bins[k];
  }
}

void NibbleSumsFixed(const uint8_t* rows, int64_t row_stride, int64_t row_bytes, int64_t n,
                     const float* p, int64_t p_stride, int heads, float* sums) {
  CQKV_CHECK(n <= kFixedMaxTokens, "NibbleSumsFixed: {} tokens in one call, at most {}", n,
             kFixedMaxTokens);
  HWY_DYNAMIC_DISPATCH(NibbleSumsFixedImpl)
  (rows, row_stride, row_bytes, n, p, p_stride, heads, sums);
}

void NibbleSumsFixedRef(const uint8_t* rows, int64_t row_stride, int64_t row_bytes, int64_t n,
                        const float* p, int64_t p_stride, int heads, float* sums) {
  CQKV_CHECK(n <= kFixedMaxTokens, "NibbleSumsFixedRef: {} tokens in one call, at most {}", n,
             kFixedMaxTokens);
  const int64_t streams = 2 * row_bytes;
  std::vector<uint32_t> out(static_cast<size_t>(heads * streams * 16), 0u);
  for (int h = 0; h < heads; ++h) {
    for (int64_t i = 0; i < n; ++i) {
      const uint32_t w = FixedWeight(p[h * p_stride + i]);
      const uint8_t* row = rows + i * row_stride;
      for (int64_t s = 0; s < streams; ++s) {
        out[(h * streams + s) * 16 + ((row[s >> 1] >> ((s & 1) * 4)) & 15)] += w;
      }
    }
  }
  for (size_t k = 0; k < out.size(); ++k) {
    sums[k] = std::fma(static_cast<float>(out[k]), 1.0f / kFixedOne, sums[k]);
  }
}

}  // namespace cqkv
#endif  // HWY_ONCE
