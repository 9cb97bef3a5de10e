// Highway per-target bit sums and block softmax of kernels/attn_cq_values.h, and the block loop
// both the SIMD kernel and its scalar reference run.
//
// Per call (one KV head, its GQA heads, a token range), in blocks of kBlock tokens:
//  - scores: the caller's `score`, or per-group key tables lut[gi][code][h] built once per call
//    (swept one chunk of groups at a time so the tables in use stay in L1), or for short ranges
//    the token's centroids;
//  - with fast-scan keys (CqAttendAdditiveFastScan) the block's scores are written by
//    CqFsScores into the rows the next steps read, with no hand-over;
//  - the exact online softmax of the block (SoftmaxBlockStrided; the reference SoftmaxBlockRef);
//  - the head's value code bytes of the block copied into rows padded to 8 bytes, then per head
//    and code bit the sum of the weights of the tokens with that bit set: for each vector of
//    lanes (code bits), one mask load per token and one masked add per head, accumulators in
//    registers;
//  - acc[h][gi*c + d] += (sum_i p_i) b0[gi][d] + sum_j S[h][gi*b + j] B_j[gi][d].
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#ifndef HWY_DISABLED_TARGETS
#define HWY_DISABLED_TARGETS (HWY_SSSE3 | HWY_SSE4 | HWY_AVX3_DL)
#endif

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/attn_cq_values.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
// Must come after foreach_target.h.
#include <hwy/highway.h>
// Per-target math (Exp) after highway.h.
#include <hwy/contrib/math/math-inl.h>

#include "kernels/attn_cq_codes.h"
#include "kernels/attn_cq_fastscan.h"
#include "kernels/attn_cq_values.h"
#include "util/error.h"

#ifndef CQKV_KERNELS_ATTN_CQ_VALUES_HELPERS_
#define CQKV_KERNELS_ATTN_CQ_VALUES_HELPERS_
namespace cqkv {
namespace {

constexpr int64_t kBlock = 256;  // tokens per block: scores, rows and bit sums stay in L1
constexpr int kLutChunk = 4;     // groups per key-table sweep: 4 x 256 x 4 floats = 16 KiB

using BitSumsFn = void (*)(const uint8_t* rows, int64_t row_stride, int64_t row_bytes, int64_t n,
                           const float* p, int64_t p_stride, int heads, float* sums);
// Byte-code key scores, 4 table lanes: out[i * 4 + h] += sum_{g0 <= gi < g1}
// lut[(gi * 256 + code_gi) * 4 + h] for n tokens whose codes sit at codes + i * stride.
using Scores8Fn = void (*)(const uint8_t* codes, int64_t stride, int64_t n, const float* lut,
                           int g0, int g1, float* out);

// Lanes of the head dimension of the key tables: 4 for up to 4 heads, else a multiple of 8.
int PaddedHeads(int heads) { return heads <= 4 ? 4 : (heads + 7) / 8 * 8; }

// Scores (heads, n) of tokens [b0, b0 + n) from the key tables; tmp holds n * hp floats.
template <int kHp>
void TableScores(const CqHeadView& hv, const float* lut, int hp_rt, int G, int64_t b0, int64_t n,
                 float* tmp, float* sc) {
  const int hp = kHp > 0 ? kHp : hp_rt;
  const int64_t K = int64_t{1} << hv.bits;
  std::fill_n(tmp, n * hp, 0.0f);
  for (int g0 = 0; g0 < hv.groups; g0 += kLutChunk) {
    const int g1 = std::min(hv.groups, g0 + kLutChunk);
    for (int64_t i = 0; i < n; ++i) {
      const uint8_t* codes;
      const int64_t base = CqTokenCodes(hv, 0, b0 + i, &codes);
      float* o = tmp + i * hp;
      for (int gi = g0; gi < g1; ++gi) {
        const float* row = lut + (gi * K + ReadCqCode(codes, base + gi, hv.bits)) * hp;
        for (int h = 0; h < hp; ++h) o[h] += row[h];
      }
    }
  }
  for (int h = 0; h < G; ++h) {
    for (int64_t i = 0; i < n; ++i) sc[h * n + i] = tmp[i * hp + h];
  }
}

// `fs`: keys in the fast-scan layout, scored by CqFsScores a block at a time straight into the
// rows the softmax and the bit sums read (no copy). `ref`: the scalar softmax (SoftmaxBlockRef).
void AttendAdditive(const CqHeadView& hv, const float* basis, const float* q, int64_t t0,
                    int64_t t1, const AttnState& st, const CqScoreFn& score, const CqFsTables* fs,
                    bool ref, BitSumsFn bit_sums, Scores8Fn scores8) {
  const int G = st.heads, hd = st.head_dim, c = hv.c, bits = hv.bits, groups = hv.groups;
  CQKV_CHECK(bits >= 1 && bits <= 12 && groups * c == hd,
             "additive values: {} groups of {} channels with {}-bit codes do not fit head dim {}",
             groups, c, bits, hd);
  CQKV_CHECK((int64_t{hv.g0} * bits) % 8 == 0 && (hv.n_groups * bits) % 8 == 0 &&
                 (int64_t{groups} * bits) % 8 == 0,
             "additive values: a head's {}-bit codes of {} groups (first group {}, {} per token) "
             "do not start and end on byte boundaries",
             bits, groups, hv.g0, hv.n_groups);
  if (t0 >= t1) return;
  const int64_t head_bytes = int64_t{groups} * bits / 8;
  const int64_t row_bytes = (head_bytes + 7) / 8 * 8, lanes = row_bytes * 8;
  const int64_t K = int64_t{1} << bits;
  const int hp = PaddedHeads(G);
  const bool tables = !score && fs == nullptr && bits <= 8 && t1 - t0 >= K;
  // Value codes are read in place when a head's codes fill whole 8-byte words, else copied
  // into zero-padded rows.
  const bool in_place = head_bytes == row_bytes;
  thread_local std::vector<float> lut, sc, tmp, sums, totals, block_sums, bmax;
  thread_local std::vector<uint8_t> rows;
  if (tables) cq_codes::KeyTables(hv, q, G, hd, hp, lut);
  sc.resize(static_cast<size_t>(G * kBlock));
  tmp.resize(static_cast<size_t>(hp * kBlock));
  sums.assign(static_cast<size_t>(G * lanes), 0.0f);
  totals.assign(static_cast<size_t>(G), 0.0f);
  block_sums.resize(static_cast<size_t>(G));
  bmax.resize(static_cast<size_t>(G));
  if (!in_place) rows.assign(static_cast<size_t>(kBlock * row_bytes), 0);  // padding stays zero
  // The bit sums and weight totals pending since the last flush share acc's softmax reference:
  // they are folded into acc before a block raises a head's max (which rescales acc) and at the
  // end, so the reduction against the bases runs a few times per call, not once per block.
  auto flush = [&] {
    for (int h = 0; h < G; ++h) {
      const float* S = sums.data() + h * lanes;
      float* acc = st.acc + int64_t{h} * hd;
      for (int gi = 0; gi < groups; ++gi) {
        const float* B = basis + int64_t{gi} * (bits + 1) * c;
        for (int d = 0; d < c; ++d) {
          float v = totals[h] * B[d];
          for (int j = 0; j < bits; ++j) v += S[gi * bits + j] * B[(1 + j) * c + d];
          acc[gi * c + d] += v;
        }
      }
    }
    std::fill(sums.begin(), sums.end(), 0.0f);
    std::fill(totals.begin(), totals.end(), 0.0f);
  };
  for (int64_t b0 = t0; b0 < t1; b0 += kBlock) {
    const int64_t n = std::min(kBlock, t1 - b0);
    // The block's scores: head h's n scores at p + h * ps.
    float* p = sc.data();
    int64_t ps = n;
    if (fs != nullptr) {
      thread_local std::vector<float> fs_rows;
      ps = CqFsScores(hv, *fs, b0, b0 + n, &fs_rows);
      p = fs_rows.data() + b0 % kCqFsBlock;
    } else if (score) {
      score(b0, n, sc.data());
    } else if (tables && hp == 4 && bits == 8 && scores8 != nullptr) {
      std::fill_n(tmp.data(), 4 * n, 0.0f);
      for (int g0 = 0; g0 < groups; g0 += kLutChunk) {
        CqForEachPiece(hv, b0, n, [&](const CqHeadView& lv, int64_t lt, int64_t pn, int64_t i) {
          scores8(lv.k_codes + lt * lv.n_groups + lv.g0, lv.n_groups, pn, lut.data(), g0,
                  std::min(groups, g0 + kLutChunk), tmp.data() + i * 4);
        });
      }
      for (int h = 0; h < G; ++h) {
        for (int64_t i = 0; i < n; ++i) sc[h * n + i] = tmp[i * 4 + h];
      }
    } else if (tables && hp == 4) {
      TableScores<4>(hv, lut.data(), hp, G, b0, n, tmp.data(), sc.data());
    } else if (tables) {
      TableScores<0>(hv, lut.data(), hp, G, b0, n, tmp.data(), sc.data());
    } else {
      cq_codes::DirectKeyScores(hv, q, G, hd, b0, n, sc.data());
    }
    BlockMax(p, G, n, ps, bmax.data());
    bool raises = false;
    for (int h = 0; h < G; ++h) raises |= bmax[h] > st.m[h];
    if (raises) flush();
    if (ref) {
      for (int h = 0; h < G; ++h) {
        if (p + h * ps != sc.data() + h * n) std::copy_n(p + h * ps, n, sc.data() + h * n);
      }
      p = sc.data();
      ps = n;
      SoftmaxBlockRef(st, p, n);
      for (int h = 0; h < G; ++h) {
        double total = 0;
        for (int64_t i = 0; i < n; ++i) total += p[h * n + i];
        block_sums[h] = static_cast<float>(total);
      }
    } else {
      SoftmaxBlockStrided(st, p, n, ps, block_sums.data());
    }
    for (int h = 0; h < G; ++h) totals[h] += block_sums[h];
    if (in_place) {
      CqForEachPiece(hv, b0, n, [&](const CqHeadView& lv, int64_t lt, int64_t pn, int64_t i) {
        bit_sums(lv.v_codes + (lt * lv.n_groups + lv.g0) * bits / 8, lv.n_groups * bits / 8,
                 row_bytes, pn, p + i, ps, G, sums.data());
      });
    } else {
      for (int64_t i = 0; i < n; ++i) {
        const uint8_t* codes;
        const int64_t base = CqTokenCodes(hv, 1, b0 + i, &codes);
        std::memcpy(rows.data() + i * row_bytes, codes + base * bits / 8,
                    static_cast<size_t>(head_bytes));
      }
      bit_sums(rows.data(), row_bytes, row_bytes, n, p, ps, G, sums.data());
    }
  }
  flush();
}

}  // namespace
}  // namespace cqkv
#endif  // CQKV_KERNELS_ATTN_CQ_VALUES_HELPERS_

HWY_BEFORE_NAMESPACE();
namespace cqkv {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

namespace {

// H heads x R vectors of lanes as register accumulators: per token one mask load per vector and
// one masked add per head and vector.
template <int H, int R, class D>
HWY_INLINE void BitSumsHeads(D d, const uint8_t* rows, int64_t row_stride, int64_t n,
                             const float* p, int64_t p_stride, float* sums, int64_t lanes) {
  using V = hn::Vec<D>;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  for (int64_t v0 = 0; v0 < lanes; v0 += R * N) {
    V acc[H * R];
    for (int k = 0; k < H * R; ++k) acc[k] = hn::Zero(d);
    const uint8_t* col = rows + v0 / 8;
    for (int64_t i = 0; i < n; ++i) {
      V w[H];
      for (int h = 0; h < H; ++h) w[h] = hn::Set(d, p[h * p_stride + i]);
      const uint8_t* row = col + i * row_stride;
      for (int r = 0; r < R; ++r) {
        const auto m = hn::LoadMaskBits(d, row + r * N / 8);
        for (int h = 0; h < H; ++h) {
          acc[h * R + r] = hn::IfThenElse(m, hn::Add(acc[h * R + r], w[h]), acc[h * R + r]);
        }
      }
    }
    for (int h = 0; h < H; ++h) {
      for (int r = 0; r < R; ++r) {
        float* s = sums + h * lanes + v0 + r * N;
        hn::StoreU(hn::Add(hn::LoadU(d, s), acc[h * R + r]), d, s);
      }
    }
  }
}

}  // namespace

void BitSumsImpl(const uint8_t* rows, int64_t row_stride, int64_t row_bytes, int64_t n,
                 const float* p, int64_t p_stride, int heads, float* sums) {
  const hn::ScalableTag<float> d;
  // Mask loads take N / 8 bytes per vector: vectors under 8 lanes use the scalar definition.
  if (hn::Lanes(d) < 8) {
    return AdditiveBitSumsRef(rows, row_stride, row_bytes, n, p, p_stride, heads, sums);
  }
  // AVX-512: 4 heads x 4 vectors = 16 accumulators of 32 registers; AVX2 4 x 2 of 16. Rows are
  // a multiple of 64 lanes (8 bytes), so R vectors always fit.
  constexpr int R = HWY_MAX_BYTES >= 64 ? 4 : 2;
  const int64_t lanes = row_bytes * 8;
  for (int h0 = 0; h0 < heads; h0 += 4) {
    const float* ph = p + h0 * p_stride;
    float* sh = sums + h0 * lanes;
    switch (std::min(4, heads - h0)) {
      case 1:
        BitSumsHeads<1, R>(d, rows, row_stride, n, ph, p_stride, sh, lanes);
        break;
      case 2:
        BitSumsHeads<2, R>(d, rows, row_stride, n, ph, p_stride, sh, lanes);
        break;
      case 3:
        BitSumsHeads<3, R>(d, rows, row_stride, n, ph, p_stride, sh, lanes);
        break;
      default:
        BitSumsHeads<4, R>(d, rows, row_stride, n, ph, p_stride, sh, lanes);
        break;
    }
  }
}

// Key scores from byte codes with 4-lane tables (up to 4 heads): one 16-byte load and add per
// token and group, a token's running sums in one vector.
void Scores8Impl(const uint8_t* codes, int64_t stride, int64_t n, const float* lut, int g0, int g1,
                 float* out) {
  const hn::CappedTag<float, 4> d;
  const int N = static_cast<int>(hn::Lanes(d));
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* row = codes + i * stride;
    for (int h = 0; h < 4; h += N) {
      auto v = hn::LoadU(d, out + i * 4 + h);
      for (int gi = g0; gi < g1; ++gi) {
        v = hn::Add(v, hn::LoadU(d, lut + (int64_t{gi} * 256 + row[gi]) * 4 + h));
      }
      hn::StoreU(v, d, out + i * 4 + h);
    }
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace cqkv
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace cqkv {

HWY_EXPORT(BitSumsImpl);
HWY_EXPORT(Scores8Impl);

namespace {
void Scores8Dispatch(const uint8_t* codes, int64_t stride, int64_t n, const float* lut, int g0,
                     int g1, float* out) {
  HWY_DYNAMIC_DISPATCH(Scores8Impl)(codes, stride, n, lut, g0, g1, out);
}
}  // namespace

void AdditiveBitSums(const uint8_t* rows, int64_t row_stride, int64_t row_bytes, int64_t n,
                     const float* p, int64_t p_stride, int heads, float* sums) {
  CQKV_CHECK(row_bytes % 8 == 0, "AdditiveBitSums: rows of {} bytes, not a multiple of 8",
             row_bytes);
  HWY_DYNAMIC_DISPATCH(BitSumsImpl)(rows, row_stride, row_bytes, n, p, p_stride, heads, sums);
}

void AdditiveBitSumsRef(const uint8_t* rows, int64_t row_stride, int64_t row_bytes, int64_t n,
                        const float* p, int64_t p_stride, int heads, float* sums) {
  const int64_t lanes = row_bytes * 8;
  for (int h = 0; h < heads; ++h) {
    for (int64_t i = 0; i < n; ++i) {
      const float w = p[h * p_stride + i];
      const uint8_t* row = rows + i * row_stride;
      for (int64_t x = 0; x < lanes; ++x) {
        if (row[x >> 3] >> (x & 7) & 1) sums[h * lanes + x] += w;
      }
    }
  }
}

void CqAttendAdditive(const CqHeadView& head, const float* v_basis, const float* q, int64_t t0,
                      int64_t t1, const AttnState& s, const CqScoreFn& score) {
  AttendAdditive(head, v_basis, q, t0, t1, s, score, nullptr, false, AdditiveBitSums,
                 Scores8Dispatch);
}

void CqAttendAdditiveFastScan(const CqHeadView& head, const float* v_basis, const float* q,
                              int64_t t0, int64_t t1, const AttnState& s) {
  if (t1 <= t0) return;
  const char* why = CqFsUnsupported(head);
  CQKV_CHECK(*why == '\0', "CQ attention: {} (bits {}, {} groups, page of {} tokens)", why,
             head.bits, head.groups, head.page_tokens);
  thread_local CqFsTables tables;
  CqFsBuildTables(head, q, s.heads, s.head_dim, &tables);
  AttendAdditive(head, v_basis, q, t0, t1, s, nullptr, &tables, false, AdditiveBitSums,
                 Scores8Dispatch);
}

void CqAttendAdditiveRef(const CqHeadView& head, const float* v_basis, const float* q, int64_t t0,
                         int64_t t1, const AttnState& s, const CqScoreFn& score) {
  AttendAdditive(head, v_basis, q, t0, t1, s, score, nullptr, true, AdditiveBitSumsRef, nullptr);
}

}  // namespace cqkv
#endif  // HWY_ONCE
