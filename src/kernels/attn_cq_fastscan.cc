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
#include <cmath>
#include <vector>

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

// The tables of CqFsBuildTables (see attn_cq_fastscan.h), one (head, group) row of 2^b entries at
// a time: q . centroid by multiply-adds over the c channels, running min / max vectors, then
// qlut = (lut - lo) / scale + 1/2 truncated (entries are >= lo: round to nearest, error <= scale
// / 2) and saturated to bytes.
void CqFsBuildTablesImpl(const CqHeadView& hv, const float* HWY_RESTRICT q, int heads, int head_dim,
                         CqFsTables* tables) {
  const hn::ScalableTag<float> df;
  const hn::Rebind<int32_t, decltype(df)> di;
  const hn::Rebind<uint8_t, decltype(df)> du8;
  const int NF = static_cast<int>(hn::Lanes(df));
  CqFsTables& t = *tables;
  const int groups = hv.groups, c = hv.c, k = 1 << hv.bits;
  std::vector<float> lo(groups);
  for (int h = 0; h < heads; ++h) {
    float range = 0, offset = 0, magnitude = 0;
    for (int g = 0; g < groups; ++g) {
      float* HWY_RESTRICT l = t.lut.data() + (int64_t{h} * groups + g) * k;
      const float* qg = q + int64_t{h} * head_dim + g * c;
      const float* HWY_RESTRICT tab = hv.k_table + int64_t{g} * c * k;  // (c, k)
      auto mn = hn::Set(df, INFINITY), mx = hn::Set(df, -INFINITY);
      for (int e = 0; e < k; e += NF) {
        auto a = hn::Zero(df);
        for (int j = 0; j < c; ++j)
          a = hn::MulAdd(hn::Set(df, qg[j]), hn::LoadU(df, tab + j * k + e), a);
        hn::StoreU(a, df, l + e);
        mn = hn::Min(mn, a);
        mx = hn::Max(mx, a);
      }
      lo[g] = hn::GetLane(hn::MinOfLanes(df, mn));
      const float hi = hn::GetLane(hn::MaxOfLanes(df, mx));
      range = std::max(range, hi - lo[g]);
      offset += lo[g];
      magnitude += std::max(std::fabs(lo[g]), std::fabs(hi));
    }
    const float scale = range / 255.0f, inv = scale > 0 ? 1.0f / scale : 0.0f;
    const auto vinv = hn::Set(df, inv), half = hn::Set(df, 0.5f);
    for (int g = 0; g < groups; ++g) {
      const float* HWY_RESTRICT l = t.lut.data() + (int64_t{h} * groups + g) * k;
      uint8_t* HWY_RESTRICT ql = t.qlut.data() + (int64_t{h} * groups + g) * k;
      const auto vlo = hn::Set(df, lo[g]);
      for (int e = 0; e < k; e += NF) {
        const auto x = hn::MulAdd(hn::Sub(hn::LoadU(df, l + e), vlo), vinv, half);
        hn::StoreU(hn::DemoteTo(du8, hn::ConvertTo(di, x)), du8, ql + e);
      }
    }
    t.scale[h] = scale;
    t.offset[h] = offset;
    // groups * scale / 2 from rounding the entries; the slack covers fp32 rounding of the
    // offset sum, of the exact score and of scale * sum + offset (a few ulps of the magnitude).
    t.bound[h] = groups * scale * 0.5f + 4e-6f * (magnitude + 1.0f);
  }
}

float CqFsMaxImpl(const float* HWY_RESTRICT x, int64_t n) {
  const hn::ScalableTag<float> df;
  const int64_t NF = static_cast<int64_t>(hn::Lanes(df));
  auto m0 = hn::Set(df, -INFINITY), m1 = m0;
  int64_t i = 0;
  for (; i + 2 * NF <= n; i += 2 * NF) {
    m0 = hn::Max(m0, hn::LoadU(df, x + i));
    m1 = hn::Max(m1, hn::LoadU(df, x + i + NF));
  }
  float m = hn::GetLane(hn::MaxOfLanes(df, hn::Max(m0, m1)));
  for (; i < n; ++i) m = std::max(m, x[i]);
  return m;
}

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
HWY_EXPORT(CqFsBuildTablesImpl);
HWY_EXPORT(CqFsMaxImpl);

void CqFsBuildTables(const CqHeadView& hv, const float* q, int heads, int head_dim,
                     CqFsTables* tables) {
  CqFsTables& t = *tables;
  t.heads = heads;
  t.groups = hv.groups;
  t.bits = hv.bits;
  t.lut.resize(static_cast<size_t>(heads) * hv.groups << hv.bits);
  t.qlut.resize(t.lut.size());
  t.scale.resize(heads);
  t.offset.resize(heads);
  t.bound.resize(heads);
  HWY_DYNAMIC_DISPATCH(CqFsBuildTablesImpl)(hv, q, heads, head_dim, tables);
}

float CqFsMax(const float* x, int64_t n) { return HWY_DYNAMIC_DISPATCH(CqFsMaxImpl)(x, n); }

void CqFsApproxScores(const CqHeadView& hv, const CqFsTables& t, int64_t blk0, int64_t nb,
                      float* scores, int64_t stride) {
  HWY_DYNAMIC_DISPATCH(CqFsApproxScoresImpl)(hv, t, blk0, nb, scores, stride);
}

}  // namespace cqkv
#endif  // HWY_ONCE
