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
#include <cstring>
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
// A vector of 8-bit codes with what every head's lookup of it shares.
template <class D>
struct Codes8 {
#if HWY_TARGET == HWY_AVX3_DL
  __m512i x;
  __mmask64 top;  // entries 128..255
  Codes8(D, hn::Vec<D> v) : x(v.raw), top(_mm512_movepi8_mask(v.raw)) {}
#else
  hn::Vec<D> low, high;  // nibbles: entry 16 * high + low
  Codes8(D d, hn::Vec<D> v) : low(hn::And(v, hn::Set(d, 0x0F))), high(hn::ShiftRight<4>(v)) {}
#endif
};

// Entry code[i] of a 256-byte table for each byte lane.
template <class D>
HWY_INLINE hn::Vec<D> Lookup256(D d, const uint8_t* HWY_RESTRICT tab, const Codes8<D>& c) {
#if HWY_TARGET == HWY_AVX3_DL
  static_assert(hn::MaxLanes(D()) == 64, "one 512-bit register of codes");
  (void)d;
  const __m512i t0 = _mm512_loadu_si512(tab), t1 = _mm512_loadu_si512(tab + 64);
  const __m512i t2 = _mm512_loadu_si512(tab + 128), t3 = _mm512_loadu_si512(tab + 192);
  const __m512i lo = _mm512_permutex2var_epi8(t0, c.x, t1);  // entries 0..127 (index bits 0-6)
  const __m512i hi = _mm512_permutex2var_epi8(t2, c.x, t3);  // entries 128..255
  return hn::Vec<D>{_mm512_mask_blend_epi8(c.top, lo, hi)};
#else
  auto r = hn::Zero(d);
  for (int j = 0; j < 16; ++j) {
    const auto part = hn::TableLookupBytes(hn::LoadDup128(d, tab + 16 * j), c.low);
    r = hn::IfThenElse(hn::Eq(c.high, hn::Set(d, static_cast<uint8_t>(j))), part, r);
  }
  return r;
#endif
}

// Byte lookups r added into 16-bit lanes (FAISS's trick, one op fewer than masking): all += r as
// 16-bit words, high += r >> 8; the low bytes' sum is all - (high << 8) modulo 2^16, exact as it
// is below 2^16.
template <class D16, class V8>
HWY_INLINE void AddBytes(D16 d16, V8 r, hn::Vec<D16>& all, hn::Vec<D16>& high) {
  const auto w = hn::BitCast(d16, r);
  all = hn::Add(all, w);
  high = hn::Add(high, hn::ShiftRight<8>(w));
}

// kH heads [h0, h0 + kH) of kB consecutive blocks (codes `cb`): the code vectors are loaded (and
// their shared lookup state made) once per group for all kH heads, each table once per kB
// blocks; all sums stay in registers.
// Where ScoreHeads writes: rows (heads, stride), token i of the call's first block at
// out[h * stride + i]; or, when hp > 0, token-major lanes out[i * hp + h] (CqLaneScoreFn).
struct ScoreOut {
  float* out;
  int64_t stride;
  int hp;
};

template <int kH, int kB>
HWY_INLINE void ScoreHeads(const CqFsTables& t, const uint8_t* HWY_RESTRICT cb, int h0,
                           const ScoreOut& dst) {
  using D8 = hn::CappedTag<uint8_t, 64>;
  const D8 d8;
  const hn::Repartition<uint16_t, D8> d16;
  const hn::Half<decltype(d16)> d16h;
  const hn::Rebind<int32_t, decltype(d16h)> d32;
  const hn::Rebind<float, decltype(d16h)> df;
  constexpr int N = static_cast<int>(hn::MaxLanes(d8));
  constexpr int V = 64 / N * kB;  // byte vectors per row of 64 tokens, over kB blocks
  constexpr int H = static_cast<int>(hn::MaxLanes(d16h));
  const int groups = t.groups, k = 1 << t.bits;
  const uint8_t* HWY_RESTRICT tab = t.qlut.data() + int64_t{h0} * groups * k;
  const int64_t tab_stride = int64_t{groups} * k;  // per head
  const int64_t block_bytes = CqFsBlockBytes(groups, t.bits);
  // Vector v: block v / (64 / N), bytes (v % (64 / N)) * N of its row.
  auto at = [&](int row, int v) {
    return cb + v / (64 / N) * block_bytes + row * 64 + v % (64 / N) * N;
  };
  hn::Vec<decltype(d16)> all[kH][V], high[kH][V];
  for (int h = 0; h < kH; ++h) {
    for (int v = 0; v < V; ++v) all[h][v] = high[h][v] = hn::Zero(d16);
  }
  if (t.bits == 8) {
    for (int g = 0; g < groups; ++g) {
      for (int v = 0; v < V; ++v) {
        const Codes8<D8> c(d8, hn::LoadU(d8, at(g, v)));
        for (int h = 0; h < kH; ++h)
          AddBytes(d16, Lookup256(d8, tab + h * tab_stride + g * 256, c), all[h][v], high[h][v]);
      }
    }
  } else {
    const auto nibble = hn::Set(d8, 0x0F);
    for (int j = 0; j < groups / 2; ++j) {
      for (int v = 0; v < V; ++v) {
        const auto x = hn::LoadU(d8, at(j, v));
        const auto lo = hn::And(x, nibble), hi = hn::And(hn::ShiftRight<4>(x), nibble);
        for (int h = 0; h < kH; ++h) {
          const uint8_t* th = tab + h * tab_stride + (2 * j) * 16;
          AddBytes(d16, hn::TableLookupBytes(hn::LoadDup128(d8, th), lo), all[h][v], high[h][v]);
          AddBytes(d16, hn::TableLookupBytes(hn::LoadDup128(d8, th + 16), hi), all[h][v],
                   high[h][v]);
        }
      }
    }
  }
  // Lane j of the low-byte sums of vector v of a block is token v * N / 2 + j, of the high-byte
  // sums token 32 + v * N / 2 + j (CqFsSlot).
  auto token = [&](int v) { return v / (64 / N) * 64 + v % (64 / N) * N / 2; };
  auto to_f32 = [&](int h, hn::Vec<decltype(d16)> a, hn::Vec<decltype(df)>& lo,
                    hn::Vec<decltype(df)>& hi) {
    const auto scale = hn::Set(df, t.scale[h0 + h]), offset = hn::Set(df, t.offset[h0 + h]);
    lo = hn::MulAdd(scale, hn::ConvertTo(df, hn::PromoteTo(d32, hn::LowerHalf(d16h, a))), offset);
    hi = hn::MulAdd(scale, hn::ConvertTo(df, hn::PromoteTo(d32, hn::UpperHalf(d16h, a))), offset);
  };
  if (dst.hp == 0) {
    for (int h = 0; h < kH; ++h) {
      float* HWY_RESTRICT o = dst.out + (h0 + h) * dst.stride;
      for (int v = 0; v < V; ++v) {
        hn::Vec<decltype(df)> lo, hi;
        to_f32(h, hn::Sub(all[h][v], hn::ShiftLeft<8>(high[h][v])), lo, hi);
        hn::StoreU(lo, df, o + token(v));
        hn::StoreU(hi, df, o + token(v) + H);
        to_f32(h, high[h][v], lo, hi);
        hn::StoreU(lo, df, o + token(v) + 32);
        hn::StoreU(hi, df, o + token(v) + 32 + H);
      }
    }
    return;
  }
  // Token-major: four heads of four lanes are one interleaved store per H tokens (the lookup
  // path's layout, no transposition); other shapes go through a scalar scatter.
  for (int v = 0; v < V; ++v) {
    for (int part = 0; part < 2; ++part) {  // low-byte sums (tokens +0), high-byte (+32)
      hn::Vec<decltype(df)> lo[kH], hi[kH];
      for (int h = 0; h < kH; ++h) {
        to_f32(h, part == 0 ? hn::Sub(all[h][v], hn::ShiftLeft<8>(high[h][v])) : high[h][v], lo[h],
               hi[h]);
      }
      const int64_t tok = token(v) + 32 * part;
      if constexpr (kH == 4) {
        if (dst.hp == 4) {
          hn::StoreInterleaved4(lo[0], lo[1], lo[2], lo[3], df, dst.out + tok * 4);
          hn::StoreInterleaved4(hi[0], hi[1], hi[2], hi[3], df, dst.out + (tok + H) * 4);
          continue;
        }
      }
      HWY_ALIGN float tmp[2 * H];
      for (int h = 0; h < kH; ++h) {
        hn::Store(lo[h], df, tmp);
        hn::Store(hi[h], df, tmp + H);
        for (int j = 0; j < 2 * H; ++j) dst.out[(tok + j) * dst.hp + h0 + h] = tmp[j];
      }
    }
  }
}

// kB blocks of all heads, four at a time (with two blocks, four heads' sums, a table and the codes
// fill most of the 32 AVX-512 registers).
template <int kB>
HWY_INLINE void ScoreBlockGroup(const CqFsTables& t, const uint8_t* cb, const ScoreOut& dst) {
  int h = 0;
  for (; h + 4 <= t.heads; h += 4) ScoreHeads<4, kB>(t, cb, h, dst);
  for (; h + 2 <= t.heads; h += 2) ScoreHeads<2, kB>(t, cb, h, dst);
  for (; h < t.heads; ++h) ScoreHeads<1, kB>(t, cb, h, dst);
}

// Blocks of one contiguous run of codes (`codes` at the first block's start), two at a time:
// each table load then serves two blocks.
void ScoreBlocks(const CqFsTables& t, const uint8_t* HWY_RESTRICT codes, int64_t nb,
                 const ScoreOut& dst) {
  const int64_t block_bytes = CqFsBlockBytes(t.groups, t.bits);
  // Block b's first token: column b * 64 of the rows, or row b * 64 of the lanes.
  auto at = [&](int64_t b) {
    return ScoreOut{dst.out + b * 64 * (dst.hp > 0 ? dst.hp : 1), dst.stride, dst.hp};
  };
  int64_t b = 0;
  for (; b + 2 <= nb; b += 2) ScoreBlockGroup<2>(t, codes + b * block_bytes, at(b));
  if (b < nb) ScoreBlockGroup<1>(t, codes + b * block_bytes, at(b));
}

// Blocks [blk0, blk0 + nb) of hv's key stream (paged or not): a page holds whole blocks, so
// one run per page.
void ScoreRange(const CqHeadView& hv, const CqFsTables& t, int64_t blk0, int64_t nb,
                const ScoreOut& dst) {
  const int64_t block_bytes = CqFsBlockBytes(t.groups, t.bits);
  if (hv.k_pages == nullptr) return ScoreBlocks(t, hv.k_codes + blk0 * block_bytes, nb, dst);
  const int64_t per_page = hv.page_tokens / kCqFsBlock;
  for (int64_t b = 0; b < nb;) {
    const int64_t blk = blk0 + b, page = blk / per_page, local = blk - page * per_page;
    const int64_t n = std::min(nb - b, per_page - local);
    const int64_t skip = b * kCqFsBlock * (dst.hp > 0 ? dst.hp : 1);
    ScoreBlocks(t, hv.k_pages[page] + local * block_bytes, n,
                ScoreOut{dst.out + skip, dst.stride, dst.hp});
    b += n;
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

void CqFsApproxScoresImpl(const CqHeadView& hv, const CqFsTables& t, int64_t blk0, int64_t nb,
                          float* scores, int64_t stride) {
#if HWY_TARGET == HWY_SCALAR
  CqFsApproxScoresRef(hv, t, blk0, nb, scores, stride);
#else
  ScoreRange(hv, t, blk0, nb, ScoreOut{scores, stride, 0});
#endif
}

// CqFsLaneScores (see the header): approximate lanes, then each head's candidates within twice
// its bound of the run's approximate max rescored exactly. With hp dividing the vector width,
// the max and the candidate test go a vector (NF / hp tokens) at a time.
void CqFsLaneScoresImpl(const CqHeadView& hv, const CqFsTables& t, int64_t t0, int64_t n, int hp,
                        float* HWY_RESTRICT lanes) {
  const int64_t blk0 = t0 / kCqFsBlock, first = t0 - blk0 * kCqFsBlock;
  const int64_t nb = (t0 + n + kCqFsBlock - 1) / kCqFsBlock - blk0;
  const int heads = t.heads;
  if (heads < hp) std::fill(lanes, lanes + nb * kCqFsBlock * hp, 0.0f);
#if HWY_TARGET == HWY_SCALAR
  thread_local std::vector<float> rows;
  rows.resize(static_cast<size_t>(heads) * nb * kCqFsBlock);
  CqFsApproxScoresRef(hv, t, blk0, nb, rows.data(), nb * kCqFsBlock);
  for (int h = 0; h < heads; ++h) {
    for (int64_t i = 0; i < nb * kCqFsBlock; ++i) lanes[i * hp + h] = rows[h * nb * kCqFsBlock + i];
  }
#else
  ScoreRange(hv, t, blk0, nb, ScoreOut{lanes, 0, hp});
#endif
  if (first > 0) std::memmove(lanes, lanes + first * hp, sizeof(float) * n * hp);
  const hn::ScalableTag<float> df;
  const int NF = static_cast<int>(hn::Lanes(df));
  HWY_ALIGN float cut[64 + hn::MaxLanes(df)];
  const bool vec = NF % hp == 0;
  if (vec) {
    auto m0 = hn::Set(df, -INFINITY), m1 = m0;
    const int64_t end = n * hp;  // a multiple of NF when hp divides NF and n of NF / hp
    int64_t i = 0;
    for (; i + 2 * NF <= end; i += 2 * NF) {
      m0 = hn::Max(m0, hn::LoadU(df, lanes + i));
      m1 = hn::Max(m1, hn::LoadU(df, lanes + i + NF));
    }
    for (; i + NF <= end; i += NF) m0 = hn::Max(m0, hn::LoadU(df, lanes + i));
    hn::Store(hn::Max(m0, m1), df, cut);
    for (int h = 0; h < hp; ++h) {
      for (int e = h + hp; e < NF; e += hp) cut[h] = std::max(cut[h], cut[e]);
    }
    for (; i < end; ++i) cut[i % hp] = std::max(cut[i % hp], lanes[i]);
  } else {
    for (int h = 0; h < hp; ++h) cut[h] = -INFINITY;
    for (int64_t i = 0; i < n; ++i) {
      for (int h = 0; h < heads; ++h) cut[h] = std::max(cut[h], lanes[i * hp + h]);
    }
  }
  for (int h = 0; h < hp; ++h) cut[h] = h < heads ? cut[h] - 2.0f * t.bound[h] : INFINITY;
  const int k = 1 << t.bits;
  auto rescore = [&](int64_t i, int h) {
    const int64_t tok = t0 + i, blk = tok / kCqFsBlock;
    lanes[i * hp + h] =
        CqFsExactScore(CqFsBlockCodes(hv, blk), static_cast<int>(tok - blk * kCqFsBlock),
                       t.lut.data() + int64_t{h} * t.groups * k, t.groups, t.bits);
  };
  int64_t i = 0;
  if (vec) {
    for (int e = hp; e < NF; ++e) cut[e] = cut[e % hp];
    const auto vcut = hn::Load(df, cut);
    const int per = NF / hp;  // tokens per vector
    for (; i + per <= n; i += per) {
      const auto hit = hn::Ge(hn::LoadU(df, lanes + i * hp), vcut);
      if (hn::AllFalse(df, hit)) continue;
      for (int e = 0; e < NF; ++e) {
        if (lanes[i * hp + e] >= cut[e]) rescore(i + e / hp, e % hp);
      }
    }
  }
  for (; i < n; ++i) {
    for (int h = 0; h < heads; ++h) {
      if (lanes[i * hp + h] >= cut[h]) rescore(i, h);
    }
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace cqkv
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace cqkv {

HWY_EXPORT(CqFsApproxScoresImpl);
HWY_EXPORT(CqFsBuildTablesImpl);
HWY_EXPORT(CqFsLaneScoresImpl);

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

void CqFsLaneScores(const CqHeadView& hv, const CqFsTables& t, int64_t t0, int64_t n, int hp,
                    float* lanes) {
  HWY_DYNAMIC_DISPATCH(CqFsLaneScoresImpl)(hv, t, t0, n, hp, lanes);
}

void CqFsApproxScores(const CqHeadView& hv, const CqFsTables& t, int64_t blk0, int64_t nb,
                      float* scores, int64_t stride) {
  HWY_DYNAMIC_DISPATCH(CqFsApproxScoresImpl)(hv, t, blk0, nb, scores, stride);
}

}  // namespace cqkv
#endif  // HWY_ONCE
