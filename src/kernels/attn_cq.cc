// Highway per-target implementation of the lookup path of kernels/attn_cq.h and the dispatch
// between paths (the direct path and the scalar reference are in attn_cq_scalar.cc).
//
// Lookup path, per call (one KV head, its `heads` GQA queries, a token range):
//  - key table lut[gi][j][h] = q_h . centroid_gi[j] and value histogram hist[gi][j][h], both
//    with the heads innermost, padded to hp lanes (4 or a multiple of 8), so one token-group
//    is one vector load (+ one store for values) that serves every head sharing the KV head;
//  - tokens in sub-blocks: score (sum of gi lookups), softmax weights p = exp(s - m_ref), then
//    hist[gi][code][:] += p. When the heads fit one vector and codes are bytes (b = 8, or b = 4
//    paired into bytes on long ranges) the grouped path sweeps a sub-block one chunk of groups
//    at a time so the tables in use stay in L1 (ScoreGroups8); otherwise codes are unpacked
//    into table offsets. Paged codes (CqHeadView::k_pages) are read a page piece at a time
//    inside the same sub-blocks, so the tables and histograms are built once per call whatever
//    the pages, and results are bitwise those of one contiguous stream;
//  - at the end acc[h][gi*c + d] = sum_j hist[gi][j][h] * centroid_gi[j][d].
// Softmax with a histogram: rescaling the histogram when the max grows costs as much as the
// final reduction, so m_ref is lazy: it is raised only when a sub-block's max exceeds it by
// more than kSlack (weights then stay <= e^kSlack, far from fp32 overflow) or on the first
// sub-block. Results are exact up to fp32 rounding; the state reports m = m_ref.
#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>
#include <vector>

#ifndef HWY_DISABLED_TARGETS
#define HWY_DISABLED_TARGETS (HWY_SSSE3 | HWY_SSE4 | HWY_AVX3_DL)
#endif

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/attn_cq.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
// Must come after foreach_target.h.
#include <hwy/highway.h>
// Per-target math (Exp) after highway.h.
#include <hwy/contrib/math/math-inl.h>

#include "kernels/attn_cq.h"
#include "kernels/attn_cq_codes.h"
#include "util/error.h"

#ifndef CQKV_KERNELS_ATTN_CQ_HELPERS_
#define CQKV_KERNELS_ATTN_CQ_HELPERS_
namespace cqkv {
namespace {
constexpr int64_t kSub = 64;  // tokens per sub-block: scores and offsets stay in L1
// Tokens per sub-block of the grouped 8-bit path (cq_codes::kSub8, see ScoreGroups8): its
// scores (kSub8 * hp floats) and compacted codes stay in L1 beside one chunk of group tables.
using cq_codes::BytePieces;
using cq_codes::kPairMinTokens;
using cq_codes::kSub8;
using cq_codes::PairMarginals;
using cq_codes::PairTables;
using cq_codes::SubBlockByteCodes;
using cq_codes::UnpackOffsets;
constexpr float kSlack = 8.0f;  // lazy max: weights <= e^8 before the reference is raised

inline int PaddedHeads(int heads) { return CqLanes(heads); }

}  // namespace
}  // namespace cqkv
#endif

HWY_BEFORE_NAMESPACE();
namespace cqkv {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Hot loops for b = 4 (two codes per byte, even group count) on short ranges (long ones pair
// the codes, see PairTables) when all heads fit one vector (hp == lanes): codes are read in
// place, no offset unpacking, and the table row of group gi starts 16 * hp floats after gi - 1.
template <class D>
HWY_INLINE void ScoreInPlace4(D d, const CqHeadView& hv, const float* HWY_RESTRICT lut, int64_t b0,
                              int64_t bn, float* HWY_RESTRICT sbuf) {
  constexpr size_t kN = hn::MaxLanes(d);
  constexpr int64_t kRow = 16 * kN;  // floats per group table
  const int pairs = hv.groups / 2;
  for (int64_t i = 0; i < bn; ++i) {
    const uint8_t* HWY_RESTRICT p = hv.k_codes + ((b0 + i) * hv.n_groups + hv.g0) / 2;
    auto a0 = hn::Zero(d), a1 = hn::Zero(d);
    const float* lg = lut;
    for (int gj = 0; gj < pairs; ++gj, lg += 2 * kRow) {
      const uint32_t byte = p[gj];
      a0 = hn::Add(a0, hn::LoadU(d, lg + (byte & 15u) * kN));
      a1 = hn::Add(a1, hn::LoadU(d, lg + kRow + (byte >> 4) * kN));
    }
    hn::StoreU(hn::Add(a0, a1), d, sbuf + i * kN);
  }
}

template <class D>
HWY_INLINE void ScatterInPlace4(D d, const CqHeadView& hv, float* HWY_RESTRICT hist, int64_t b0,
                                int64_t bn, const float* HWY_RESTRICT sbuf) {
  constexpr size_t kN = hn::MaxLanes(d);
  constexpr int64_t kRow = 16 * kN;
  const int pairs = hv.groups / 2;
  for (int64_t i = 0; i < bn; ++i) {
    const uint8_t* HWY_RESTRICT p = hv.v_codes + ((b0 + i) * hv.n_groups + hv.g0) / 2;
    const auto pv = hn::LoadU(d, sbuf + i * kN);
    float* hg = hist;
    for (int gj = 0; gj < pairs; ++gj, hg += 2 * kRow) {
      const uint32_t byte = p[gj];
      float* w0 = hg + (byte & 15u) * kN;
      float* w1 = hg + kRow + (byte >> 4) * kN;
      hn::StoreU(hn::Add(hn::LoadU(d, w0), pv), d, w0);
      hn::StoreU(hn::Add(hn::LoadU(d, w1), pv), d, w1);
    }
  }
}

// Grouped 8-bit path: a 2^8-entry table per group is 4 KiB per 4 heads, so a head's 16-32
// groups (64-128 KiB of keys, as much of histograms) overflow L1 and every token-group lookup
// misses it. Instead a sub-block of kSub8 tokens is swept one chunk of kG groups at a time
// (16 KiB of tables), so each table line is reused by many tokens while it sits in L1; the
// scores are accumulated in sbuf across chunks (first chunk stores, later ones add).
// `codes` are compacted (CompactCodes): token i's code of chunk group j is codes[i * gb + j].
template <int kG, class D>
HWY_INLINE void ScoreGroups8(D d, const float* HWY_RESTRICT lut, const uint8_t* HWY_RESTRICT codes,
                             int gb, int64_t bn, bool first, float* HWY_RESTRICT sbuf) {
  constexpr size_t kN = hn::MaxLanes(d);
  constexpr int64_t kRow = 256 * kN;
  for (int64_t i = 0; i < bn; ++i) {
    const uint8_t* HWY_RESTRICT c = codes + i * gb;
    auto a0 = first ? hn::Zero(d) : hn::LoadU(d, sbuf + i * kN);
    auto a1 = hn::Zero(d);
    for (int j = 0; j < kG; j += 2) {
      a0 = hn::Add(a0, hn::LoadU(d, lut + j * kRow + c[j] * kN));
      if (j + 1 < kG) a1 = hn::Add(a1, hn::LoadU(d, lut + (j + 1) * kRow + c[j + 1] * kN));
    }
    hn::StoreU(hn::Add(a0, a1), d, sbuf + i * kN);
  }
}

// hist[j][code][:] += p for a chunk of kG groups over a sub-block (weights in sbuf).
template <int kG, class D>
HWY_INLINE void ScatterGroups8(D d, float* HWY_RESTRICT hist, const uint8_t* HWY_RESTRICT codes,
                               int gb, int64_t bn, const float* HWY_RESTRICT sbuf) {
  constexpr size_t kN = hn::MaxLanes(d);
  constexpr int64_t kRow = 256 * kN;
  for (int64_t i = 0; i < bn; ++i) {
    const uint8_t* HWY_RESTRICT c = codes + i * gb;
    const auto pv = hn::LoadU(d, sbuf + i * kN);
    for (int j = 0; j < kG; ++j) {
      float* w = hist + j * kRow + c[j] * kN;
      hn::StoreU(hn::Add(hn::LoadU(d, w), pv), d, w);
    }
  }
}

// Chunks of 16 KiB of tables: 4 groups at 4 lanes, 2 at 8. Each chunk goes over every piece of
// the sub-block before the next chunk, so its tables serve the whole sub-block while in L1
// whatever the pages (tokens of different pieces are independent: sums are those of one run).
template <class D>
HWY_INLINE void ScoreGrouped8(D d, int groups, const float* lut, const BytePieces& codes,
                              float* sbuf) {
  constexpr size_t kN = hn::MaxLanes(d);
  constexpr int kG = kN <= 4 ? 4 : 2;
  constexpr int64_t kRow = 256 * kN;
  int gi = 0;
  for (; gi + kG <= groups; gi += kG) {
    float* s = sbuf;
    for (int r = 0; r < codes.count; s += codes.n[r] * kN, ++r)
      ScoreGroups8<kG>(d, lut + gi * kRow, codes.codes[r] + gi, groups, codes.n[r], gi == 0, s);
  }
  for (; gi < groups; ++gi) {
    float* s = sbuf;
    for (int r = 0; r < codes.count; s += codes.n[r] * kN, ++r)
      ScoreGroups8<1>(d, lut + gi * kRow, codes.codes[r] + gi, groups, codes.n[r], gi == 0, s);
  }
}

template <class D>
HWY_INLINE void ScatterGrouped8(D d, int groups, float* hist, const BytePieces& codes,
                                const float* sbuf) {
  constexpr size_t kN = hn::MaxLanes(d);
  constexpr int kG = kN <= 4 ? 4 : 2;
  constexpr int64_t kRow = 256 * kN;
  int gi = 0;
  for (; gi + kG <= groups; gi += kG) {
    const float* s = sbuf;
    for (int r = 0; r < codes.count; s += codes.n[r] * kN, ++r)
      ScatterGroups8<kG>(d, hist + gi * kRow, codes.codes[r] + gi, groups, codes.n[r], s);
  }
  for (; gi < groups; ++gi) {
    const float* s = sbuf;
    for (int r = 0; r < codes.count; s += codes.n[r] * kN, ++r)
      ScatterGroups8<1>(d, hist + gi * kRow, codes.codes[r] + gi, groups, codes.n[r], s);
  }
}

// PairMarginals for 4 lanes, a vector of NF / 4 entries at a time: a pair's joint histogram is
// 16 rows (high nibble) of 16 entries x 4 lanes, so the low-nibble marginal is the sum of the 16
// rows and the high-nibble one each row's sum of its 16 entries (per lane). The scalar version
// costs as much as thousands of tokens' updates (two read-modify-writes per joint entry).
template <class D>
HWY_INLINE void PairMarginals4(D df, const float* HWY_RESTRICT hist2, int pairs,
                               float* HWY_RESTRICT hist) {
  constexpr int64_t kRow = 16 * 4;  // floats per high-nibble row
  const int64_t NF = static_cast<int64_t>(hn::Lanes(df));
  HWY_ALIGN float part[hn::MaxLanes(df)];
  for (int j = 0; j < pairs; ++j) {
    const float* w = hist2 + int64_t{j} * 256 * 4;
    float* lo = hist + int64_t{2 * j} * kRow;
    float* hi = hist + int64_t{2 * j + 1} * kRow;
    for (int64_t e = 0; e < kRow; e += NF) {
      auto a = hn::LoadU(df, lo + e);
      for (int r = 0; r < 16; ++r) a = hn::Add(a, hn::LoadU(df, w + r * kRow + e));
      hn::StoreU(a, df, lo + e);
    }
    for (int r = 0; r < 16; ++r) {
      auto a = hn::Zero(df);
      for (int64_t e = 0; e < kRow; e += NF) a = hn::Add(a, hn::LoadU(df, w + r * kRow + e));
      hn::Store(a, df, part);
      for (int64_t e = 0; e < NF; ++e) hi[r * 4 + e % 4] += part[e];
    }
  }
}

template <size_t kCap>
void CqLookup(const CqHeadView& hv, const float* HWY_RESTRICT q, int64_t t0, int64_t t1,
              const AttnState& st, const CqScoreFn& score, const CqLaneScoreFn& lane_score) {
  const hn::CappedTag<float, kCap> d;
  const int N = static_cast<int>(hn::Lanes(d));
  const int G = st.heads, hd = st.head_dim, c = hv.c, groups = hv.groups;
  const int hp = PaddedHeads(G);
  const int64_t k = int64_t{1} << hv.bits;
  const int64_t table = groups * k * hp;  // floats per lut / hist
  thread_local std::vector<float> lut_v, hist_v, sbuf_v, tmp_v;
  thread_local std::vector<uint32_t> koff_v, voff_v;
  thread_local std::vector<uint8_t> cbuf_v;
  lut_v.resize(table);
  hist_v.assign(table, 0.0f);
  sbuf_v.resize((kSub8 + 128) * std::max(hp, G));  // + scratch rows of lane_score
  tmp_v.resize(std::max<int64_t>(k, hp));
  koff_v.resize(kSub * groups);
  voff_v.resize(kSub * groups);
  float* HWY_RESTRICT lut = lut_v.data();
  float* HWY_RESTRICT hist = hist_v.data();
  float* HWY_RESTRICT sbuf = sbuf_v.data();
  uint32_t* HWY_RESTRICT koff = koff_v.data();
  uint32_t* HWY_RESTRICT voff = voff_v.data();

  const hn::ScalableTag<float> df;
  const int64_t NF = static_cast<int64_t>(hn::Lanes(df));
  // With 4 table lanes, tables convert to and from per-head rows with (de)interleaving
  // loads/stores instead of scalar strided copies (as costly as the sums themselves).
  const bool lanes4 = hp == 4 && k % NF == 0;
  // Key tables: for each (head, group) a row over centroids, then interleaved heads-innermost.
  const bool scored = score || lane_score;
  if (!scored && lanes4) {
    for (int gi = 0; gi < groups; ++gi) {
      const float* tab = hv.k_table + int64_t{gi} * c * k;  // (c, k)
      for (int64_t e = 0; e < k; e += NF) {
        hn::Vec<decltype(df)> v[4];
        for (int h = 0; h < 4; ++h) {
          v[h] = hn::Zero(df);
          if (h >= G) continue;
          const float* qg = q + int64_t{h} * hd + gi * c;
          for (int j = 0; j < c; ++j)
            v[h] = hn::MulAdd(hn::Set(df, qg[j]), hn::LoadU(df, tab + j * k + e), v[h]);
        }
        hn::StoreInterleaved4(v[0], v[1], v[2], v[3], df, lut + (gi * k + e) * 4);
      }
    }
  } else if (!scored) {
    std::fill(lut, lut + table, 0.0f);
    float* tmp = tmp_v.data();
    for (int gi = 0; gi < groups; ++gi) {
      const float* tab = hv.k_table + int64_t{gi} * c * k;  // (c, k)
      for (int h = 0; h < G; ++h) {
        const float* qg = q + int64_t{h} * hd + gi * c;
        std::fill(tmp, tmp + k, 0.0f);
        for (int j = 0; j < c; ++j) {
          const float qj = qg[j];
          const float* row = tab + j * k;
          for (int64_t e = 0; e < k; ++e) tmp[e] += qj * row[e];
        }
        float* l = lut + gi * k * hp + h;
        for (int64_t e = 0; e < k; ++e) l[e * hp] = tmp[e];
      }
    }
  }

  HWY_ALIGN float m_ref[64], l_sum[64], fac[64];
  for (int h = 0; h < hp; ++h) {
    m_ref[h] = -INFINITY;
    l_sum[h] = 0.0f;
  }
  // Byte-code paths (ScoreGrouped8, ScoreInPlace4) when all heads fit one vector.
  const bool one_vec = hp == static_cast<int>(hn::MaxLanes(d)) && hp == N;
  int in_place = 0;
  if (one_vec && hv.bits == 8) {
    in_place = 8;
  } else if (one_vec && hv.bits == 4 && groups % 2 == 0 && hv.g0 % 2 == 0 && hv.n_groups % 2 == 0) {
    in_place = 4;
  }
  // The grouped path works on byte codes: b = 8 as stored, and b = 4 on long ranges as pairs
  // (see PairTables), which halves the lookups and histogram updates per token.
  const bool pairs = in_place == 4 && t1 - t0 >= kPairMinTokens;
  int g8 = groups;  // byte codes per token
  float* HWY_RESTRICT lut8 = lut;
  float* HWY_RESTRICT hist8 = hist;
  int64_t table8 = table;
  if (pairs) {
    g8 = groups / 2;
    table8 = int64_t{g8} * 256 * hp;
    thread_local std::vector<float> lut2_v, hist2_v;
    lut2_v.resize(table8);
    hist2_v.assign(table8, 0.0f);
    lut8 = lut2_v.data();
    hist8 = hist2_v.data();
    if (!scored) PairTables(lut, g8, hp, lut8);
    in_place = 8;
  }
  const int64_t sub = in_place == 8 ? kSub8 : kSub;
  if (in_place == 8) cbuf_v.resize(kSub8 * g8);
  uint8_t* HWY_RESTRICT cbuf = cbuf_v.data();
  for (int64_t b0 = t0; b0 < t1; b0 += sub) {
    const int64_t bn = std::min(sub, t1 - b0);
    // Code reads go a page piece at a time (CqForEachPiece; one piece without pages), so
    // sub-blocks, and with them every sum and the lazy max, are the same as over one stream.
    if (in_place == 0) {
      CqForEachPiece(hv, b0, bn, [&](const CqHeadView& lv, int64_t lt, int64_t n, int64_t i) {
        UnpackOffsets(lv.v_codes, lv, lt, n, hp, voff + i * groups);
      });
    }
    if (lane_score) {
      lane_score(b0, bn, hp, sbuf);
    } else if (score) {
      // The callback writes (heads, n); transpose to tokens-major with padded lanes.
      float* tmp = tmp_v.data();
      thread_local std::vector<float> cb;
      cb.resize(static_cast<size_t>(G * bn));
      score(b0, bn, cb.data());
      for (int64_t i = 0; i < bn; ++i) {
        for (int h = 0; h < hp; ++h) tmp[h] = h < G ? cb[h * bn + i] : 0.0f;
        std::memcpy(sbuf + i * hp, tmp, sizeof(float) * hp);
      }
    } else if (in_place == 8) {
      ScoreGrouped8(d, g8, lut8, SubBlockByteCodes(hv, 0, b0, bn, g8, cbuf), sbuf);
    } else if (in_place == 4) {
      CqForEachPiece(hv, b0, bn, [&](const CqHeadView& lv, int64_t lt, int64_t n, int64_t i) {
        ScoreInPlace4(d, lv, lut, lt, n, sbuf + i * hp);
      });
    } else {
      CqForEachPiece(hv, b0, bn, [&](const CqHeadView& lv, int64_t lt, int64_t n, int64_t i) {
        UnpackOffsets(lv.k_codes, lv, lt, n, hp, koff + i * groups);
      });
      for (int64_t i = 0; i < bn; ++i) {
        const uint32_t* o = koff + i * groups;
        for (int h = 0; h < hp; h += N) {
          auto a0 = hn::Zero(d), a1 = hn::Zero(d);
          int gi = 0;
          for (; gi + 2 <= groups; gi += 2) {
            a0 = hn::Add(a0, hn::LoadU(d, lut + o[gi] + h));
            a1 = hn::Add(a1, hn::LoadU(d, lut + o[gi + 1] + h));
          }
          if (gi < groups) a0 = hn::Add(a0, hn::LoadU(d, lut + o[gi] + h));
          hn::StoreU(hn::Add(a0, a1), d, sbuf + i * hp + h);
        }
      }
    }
    // Lazy reference max (see the file comment). The sub-block max goes a vector of heads at a
    // time: a scalar max per head is a latency chain as long as the sub-block.
    HWY_ALIGN float bmax[64];
    for (int h = 0; h < hp; h += N) {
      auto a0 = hn::Set(d, -INFINITY), a1 = a0;
      int64_t i = 0;
      for (; i + 2 <= bn; i += 2) {
        a0 = hn::Max(a0, hn::LoadU(d, sbuf + i * hp + h));
        a1 = hn::Max(a1, hn::LoadU(d, sbuf + (i + 1) * hp + h));
      }
      if (i < bn) a0 = hn::Max(a0, hn::LoadU(d, sbuf + i * hp + h));
      hn::StoreU(hn::Max(a0, a1), d, bmax + h);
    }
    bool raise = false;
    for (int h = 0; h < hp; ++h) {
      const float bm = bmax[h];
      fac[h] = 1.0f;
      if (bm > m_ref[h] + kSlack || m_ref[h] == -INFINITY) {
        fac[h] = std::exp(m_ref[h] - bm);  // 0 on the first sub-block
        m_ref[h] = bm;
        raise = true;
      }
    }
    if (raise) {
      for (int h = 0; h < hp; ++h) l_sum[h] *= fac[h];
      for (int h = 0; h < hp; h += N) {
        const auto f = hn::LoadU(d, fac + h);
        for (int64_t e = h; e < table8; e += hp)
          hn::StoreU(hn::Mul(f, hn::LoadU(d, hist8 + e)), d, hist8 + e);
      }
    }
    int64_t i0 = 0;
    if (lanes4 && NF > 4 && NF <= 64) {
      // 4-lane rows: NF / 4 tokens per full-width Exp (a 4-lane Exp costs as much).
      HWY_ALIGN float rep[64];
      for (int64_t e = 0; e < NF; ++e) rep[e] = m_ref[e % 4];
      const auto m = hn::Load(df, rep);
      auto ls = hn::Zero(df);
      for (; i0 + NF / 4 <= bn; i0 += NF / 4) {
        const auto p = hn::Exp(df, hn::Sub(hn::LoadU(df, sbuf + i0 * 4), m));
        ls = hn::Add(ls, p);
        hn::StoreU(p, df, sbuf + i0 * 4);
      }
      hn::Store(ls, df, rep);
      for (int64_t e = 0; e < NF; ++e) l_sum[e % 4] += rep[e];
    }
    for (int h = 0; h < hp; h += N) {
      const auto m = hn::LoadU(d, m_ref + h);
      auto ls = hn::LoadU(d, l_sum + h);
      for (int64_t i = i0; i < bn; ++i) {
        const auto p = hn::Exp(d, hn::Sub(hn::LoadU(d, sbuf + i * hp + h), m));
        ls = hn::Add(ls, p);
        hn::StoreU(p, d, sbuf + i * hp + h);
      }
      hn::StoreU(ls, d, l_sum + h);
    }
    // Value histograms: one read-modify-write per token-group serves all heads.
    if (in_place == 8) {
      ScatterGrouped8(d, g8, hist8, SubBlockByteCodes(hv, 1, b0, bn, g8, cbuf), sbuf);
      continue;
    }
    if (in_place == 4) {
      CqForEachPiece(hv, b0, bn, [&](const CqHeadView& lv, int64_t lt, int64_t n, int64_t i) {
        ScatterInPlace4(d, lv, hist, lt, n, sbuf + i * hp);
      });
      continue;
    }
    for (int64_t i = 0; i < bn; ++i) {
      const uint32_t* o = voff + i * groups;
      for (int h = 0; h < hp; h += N) {
        const auto p = hn::LoadU(d, sbuf + i * hp + h);
        for (int gi = 0; gi < groups; ++gi) {
          float* w = hist + o[gi] + h;
          hn::StoreU(hn::Add(hn::LoadU(d, w), p), d, w);
        }
      }
    }
  }

  if (pairs && hp == 4 && NF % 4 == 0 && 64 % NF == 0) {
    PairMarginals4(df, hist8, g8, hist);
  } else if (pairs) {
    PairMarginals(hist8, g8, hp, hist);
  }
  // Reduce the histograms against the value centroids into this range's own state, then merge.
  thread_local std::vector<float> part_acc, wt;
  part_acc.assign(static_cast<size_t>(G) * hd, 0.0f);
  wt.resize(4 * k);
  for (int gi = 0; gi < groups; ++gi) {
    const float* tab = hv.v_table + int64_t{gi} * c * k;  // (c, k)
    const float* hg = hist + gi * k * hp;
    if (lanes4) {
      for (int64_t e = 0; e < k; e += NF) {
        hn::Vec<decltype(df)> w0, w1, w2, w3;
        hn::LoadInterleaved4(df, hg + e * 4, w0, w1, w2, w3);
        hn::StoreU(w0, df, wt.data() + e);
        hn::StoreU(w1, df, wt.data() + k + e);
        hn::StoreU(w2, df, wt.data() + 2 * k + e);
        hn::StoreU(w3, df, wt.data() + 3 * k + e);
      }
    }
    for (int h = 0; h < G; ++h) {
      float* w = wt.data() + (lanes4 ? h * k : 0);
      if (!lanes4) {
        for (int64_t e = 0; e < k; ++e) w[e] = hg[e * hp + h];
      }
      for (int j = 0; j < c; ++j) {
        const float* row = tab + j * k;
        auto a = hn::Zero(df);
        int64_t e = 0;
        for (; e + NF <= k; e += NF)
          a = hn::MulAdd(hn::LoadU(df, w + e), hn::LoadU(df, row + e), a);
        float sum = hn::GetLane(hn::SumOfLanes(df, a));
        for (; e < k; ++e) sum += w[e] * row[e];
        part_acc[int64_t{h} * hd + gi * c + j] = sum;
      }
    }
  }
  MergeAttnState(st, AttnState{m_ref, l_sum, part_acc.data(), G, hd});
}

void CqLookupImpl(const CqHeadView& hv, const float* q, int64_t t0, int64_t t1, const AttnState& st,
                  const CqScoreFn& score, const CqLaneScoreFn& lane_score) {
  if (st.heads <= 4) return CqLookup<4>(hv, q, t0, t1, st, score, lane_score);
  return CqLookup<8>(hv, q, t0, t1, st, score, lane_score);
}

}  // namespace HWY_NAMESPACE
}  // namespace cqkv
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace cqkv {

HWY_EXPORT(CqLookupImpl);

void CqAttend(const CqHeadView& hv, const float* q, int64_t t0, int64_t t1, const AttnState& s,
              const CqScoreFn& score, CqPath path) {
  if (t1 <= t0) return;
  CQKV_CHECK(hv.k_pages == nullptr || (hv.page_tokens > 0 && hv.page_tokens % 256 == 0),
             "CQ attention: pages of {} tokens are not a positive multiple of 256", hv.page_tokens);
  if (path == CqPath::kAuto) {
    const bool lookup = hv.bits <= 8 && 2 * (t1 - t0) >= (int64_t{1} << hv.bits);
    path = lookup ? CqPath::kLookup : CqPath::kDirect;
  }
  if (path == CqPath::kLookup && hv.bits <= 8 && s.heads <= 64) {
    HWY_DYNAMIC_DISPATCH(CqLookupImpl)(hv, q, t0, t1, s, score, nullptr);
  } else {
    CqAttendDirect(hv, q, t0, t1, s, score);
  }
}

void CqAttendLanes(const CqHeadView& hv, const float* q, int64_t t0, int64_t t1, const AttnState& s,
                   const CqLaneScoreFn& lane_score) {
  if (t1 <= t0) return;
  CQKV_CHECK(hv.k_pages == nullptr || (hv.page_tokens > 0 && hv.page_tokens % 256 == 0),
             "CQ attention: pages of {} tokens are not a positive multiple of 256", hv.page_tokens);
  CQKV_CHECK(hv.bits <= 8 && s.heads <= 64,
             "CQ attention: lane scores need codes of <= 8 bits and <= 64 heads (got {}, {})",
             hv.bits, s.heads);
  HWY_DYNAMIC_DISPATCH(CqLookupImpl)(hv, q, t0, t1, s, nullptr, lane_score);
}

}  // namespace cqkv
#endif  // HWY_ONCE
