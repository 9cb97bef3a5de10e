// Highway per-target block scoring of kernels/attn_cq_fastscan.h: for each 64-token block,
// query head and group (or group pair), one byte lookup per vector of codes into that head's
// quantised table, the bytes added into 16-bit lanes (low bytes: tokens 0..31, high bytes:
// 32..63, see CqFsSlot), then one fp32 conversion per block: score = scale * sum + offset.
//  - 8-bit codes, AVX-512 VBMI (HWY_AVX3_DL): the 256-byte table is four registers; two
//    vpermi2b (128 entries each, index bits 0-6) and a blend on the index's top bit;
//  - 8-bit codes elsewhere: sixteen 16-byte shuffles selected by the high nibble (portable);
//  - 4-bit codes (group pairs in a byte): two 16-byte shuffles per byte vector, low and high
//    nibble, tables broadcast to every 128-bit block;
//  - HWY_SCALAR: the scalar reference.
// Sums stay below 65536: a token adds `groups` entries of at most 255 (CqFsUnsupported).
#include <algorithm>

#ifndef HWY_DISABLED_TARGETS
#define HWY_DISABLED_TARGETS (HWY_SSSE3 | HWY_SSE4)
#endif
#ifndef HWY_WANT_AVX3_DL
#define HWY_WANT_AVX3_DL  // vpermi2b: Highway 1.0 compiles AVX3_DL only on request
#endif

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/attn_cq_fastscan.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
// Must come after foreach_target.h.
#include <hwy/highway.h>

#include "kernels/attn_cq_fastscan.h"

HWY_BEFORE_NAMESPACE();
namespace cqkv {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

#if HWY_TARGET != HWY_SCALAR
// Entry x[i] of a 256-byte table for each byte lane.
template <class D>
HWY_INLINE hn::Vec<D> Lookup256(D d, const uint8_t* HWY_RESTRICT tab, hn::Vec<D> x) {
#if HWY_TARGET == HWY_AVX3_DL
  static_assert(hn::MaxLanes(D()) == 64, "one 512-bit register of codes");
  const __m512i t0 = _mm512_loadu_si512(tab), t1 = _mm512_loadu_si512(tab + 64);
  const __m512i t2 = _mm512_loadu_si512(tab + 128), t3 = _mm512_loadu_si512(tab + 192);
  const __m512i lo = _mm512_permutex2var_epi8(t0, x.raw, t1);  // entries 0..127
  const __m512i hi = _mm512_permutex2var_epi8(t2, x.raw, t3);  // entries 128..255
  return hn::Vec<D>{_mm512_mask_blend_epi8(_mm512_movepi8_mask(x.raw), lo, hi)};
#else
  const auto low = hn::And(x, hn::Set(d, 0x0F));
  const auto high = hn::ShiftRight<4>(x);
  auto r = hn::Zero(d);
  for (int j = 0; j < 16; ++j) {
    const auto part = hn::TableLookupBytes(hn::LoadDup128(d, tab + 16 * j), low);
    r = hn::IfThenElse(hn::Eq(high, hn::Set(d, static_cast<uint8_t>(j))), part, r);
  }
  return r;
#endif
}

// acc[2v] += low bytes of r (as 16-bit lanes), acc[2v + 1] += high bytes.
template <class D16, class V8>
HWY_INLINE void AddBytes(D16 d16, V8 r, hn::Vec<D16>& even, hn::Vec<D16>& odd) {
  const auto w = hn::BitCast(d16, r);
  even = hn::Add(even, hn::And(w, hn::Set(d16, 0x00FF)));
  odd = hn::Add(odd, hn::ShiftRight<8>(w));
}

// Blocks of one contiguous run of codes (`codes` at the first block's start).
void ScoreBlocks(const CqFsTables& t, const uint8_t* HWY_RESTRICT codes, int64_t nb,
                 float* HWY_RESTRICT scores, int64_t stride) {
  const hn::CappedTag<uint8_t, 64> d8;
  const hn::Repartition<uint16_t, decltype(d8)> d16;
  const hn::Half<decltype(d16)> d16h;
  const hn::Rebind<int32_t, decltype(d16h)> d32;
  const hn::Rebind<float, decltype(d16h)> df;
  constexpr int N = static_cast<int>(hn::MaxLanes(d8));
  constexpr int V = 64 / N;  // byte vectors per 64-token row
  constexpr int H = static_cast<int>(hn::MaxLanes(d16h));
  const int groups = t.groups, k = 1 << t.bits;
  const int rows = t.bits == 8 ? groups : groups / 2;
  const int64_t block_bytes = int64_t{rows} * 64;
  hn::Vec<decltype(d16)> even[V], odd[V];
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* HWY_RESTRICT cb = codes + b * block_bytes;
    for (int h = 0; h < t.heads; ++h) {
      const uint8_t* HWY_RESTRICT tab = t.qlut.data() + int64_t{h} * groups * k;
      for (int v = 0; v < V; ++v) even[v] = odd[v] = hn::Zero(d16);
      if (t.bits == 8) {
        for (int g = 0; g < groups; ++g) {
          for (int v = 0; v < V; ++v) {
            const auto x = hn::LoadU(d8, cb + g * 64 + v * N);
            AddBytes(d16, Lookup256(d8, tab + g * 256, x), even[v], odd[v]);
          }
        }
      } else {
        const auto nibble = hn::Set(d8, 0x0F);
        for (int j = 0; j < rows; ++j) {
          const auto t_lo = hn::LoadDup128(d8, tab + (2 * j) * 16);
          const auto t_hi = hn::LoadDup128(d8, tab + (2 * j + 1) * 16);
          for (int v = 0; v < V; ++v) {
            const auto x = hn::LoadU(d8, cb + j * 64 + v * N);
            const auto lo = hn::And(x, nibble), hi = hn::And(hn::ShiftRight<4>(x), nibble);
            AddBytes(d16, hn::TableLookupBytes(t_lo, lo), even[v], odd[v]);
            AddBytes(d16, hn::TableLookupBytes(t_hi, hi), even[v], odd[v]);
          }
        }
      }
      // Lane j of even[v] is token v * N / 2 + j, of odd[v] token 32 + v * N / 2 + j.
      const auto scale = hn::Set(df, t.scale[h]), offset = hn::Set(df, t.offset[h]);
      float* HWY_RESTRICT out = scores + h * stride + b * 64;
      auto emit = [&](hn::Vec<decltype(d16)> a, float* o) {
        const auto lo = hn::ConvertTo(df, hn::PromoteTo(d32, hn::LowerHalf(d16h, a)));
        const auto hi = hn::ConvertTo(df, hn::PromoteTo(d32, hn::UpperHalf(d16h, a)));
        hn::StoreU(hn::MulAdd(scale, lo, offset), df, o);
        hn::StoreU(hn::MulAdd(scale, hi, offset), df, o + H);
      };
      for (int v = 0; v < V; ++v) {
        emit(even[v], out + v * N / 2);
        emit(odd[v], out + 32 + v * N / 2);
      }
    }
  }
}
#endif

void CqFsApproxScoresImpl(const CqHeadView& hv, const CqFsTables& t, int64_t blk0, int64_t nb,
                          float* scores, int64_t stride) {
#if HWY_TARGET == HWY_SCALAR
  CqFsApproxScoresRef(hv, t, blk0, nb, scores, stride);
#else
  const int64_t block_bytes = CqFsBlockBytes(t.groups, t.bits);
  if (hv.k_pages == nullptr) {
    return ScoreBlocks(t, hv.k_codes + blk0 * block_bytes, nb, scores, stride);
  }
  // A page holds whole blocks: one run per page.
  const int64_t per_page = hv.page_tokens / kCqFsBlock;
  for (int64_t b = 0; b < nb;) {
    const int64_t blk = blk0 + b, page = blk / per_page, local = blk - page * per_page;
    const int64_t n = std::min(nb - b, per_page - local);
    ScoreBlocks(t, hv.k_pages[page] + local * block_bytes, n, scores + b * kCqFsBlock, stride);
    b += n;
  }
#endif
}

}  // namespace HWY_NAMESPACE
}  // namespace cqkv
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace cqkv {

HWY_EXPORT(CqFsApproxScoresImpl);

void CqFsApproxScores(const CqHeadView& hv, const CqFsTables& t, int64_t blk0, int64_t nb,
                      float* scores, int64_t stride) {
  HWY_DYNAMIC_DISPATCH(CqFsApproxScoresImpl)(hv, t, blk0, nb, scores, stride);
}

}  // namespace cqkv
#endif  // HWY_ONCE
