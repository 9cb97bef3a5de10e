// The block loop of kernels/attn_cq_nibble.h, shared by the SIMD kernels and the reference.
//
// Per call (one KV head, its GQA heads, a token range), in blocks of kBlock tokens:
//  - scores: the caller's `score`, fast-scan keys (CqFsScores written into the rows the next
//    steps read), per-group key tables lut[gi][code][h] built once per call, or for ranges
//    shorter than 2^b tokens the token's centroids;
//  - the exact online softmax of the block (SoftmaxBlockStrided; the reference SoftmaxBlockRef);
//  - the block's nibble histograms from the value codes read in place (NibbleSums*);
//  - when the block raised a head's max, its pending histograms scaled as acc and l were;
//  - at the end, acc[h][gi*c + d] += sum over the group's streams s and bins v of
//    H[h][s][v] T_s[v][d].
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/attn_cq_codes.h"
#include "kernels/attn_cq_fastscan.h"
#include "kernels/attn_cq_nibble.h"
#include "util/error.h"

namespace cqkv {
namespace {

constexpr int64_t kBlock = 256;  // tokens per block: scores and weights stay in L1

using SumsFn = void (*)(const uint8_t* rows, int64_t row_stride, int64_t row_bytes, int64_t n,
                        const float* p, int64_t p_stride, int heads, float* sums);

// Scores (heads, n) of tokens [b0, b0 + n) from the key tables (tmp: n * hp floats) or, without
// tables, from each token's centroids.
void KeyScores(const CqHeadView& hv, const float* lut, int hp, const float* q, int G, int hd,
               int64_t b0, int64_t n, float* tmp, float* sc) {
  const int64_t K = int64_t{1} << hv.bits;
  if (lut != nullptr && hp == 4) {  // up to 4 heads: a token's sums in four locals
    for (int64_t i = 0; i < n; ++i) {
      const uint8_t* codes;
      const int64_t base = CqTokenCodes(hv, 0, b0 + i, &codes);
      // Four named sums: an array here was kept in memory, a store-to-load chain per group.
      float o0 = 0, o1 = 0, o2 = 0, o3 = 0;
      for (int gi = 0; gi < hv.groups; ++gi) {
        const float* row = lut + (gi * K + ReadCqCode(codes, base + gi, hv.bits)) * 4;
        o0 += row[0];
        o1 += row[1];
        o2 += row[2];
        o3 += row[3];
      }
      const float o[4] = {o0, o1, o2, o3};
      for (int h = 0; h < G; ++h) sc[h * n + i] = o[h];
    }
    return;
  }
  if (lut != nullptr) {
    std::fill_n(tmp, n * hp, 0.0f);
    for (int64_t i = 0; i < n; ++i) {
      const uint8_t* codes;
      const int64_t base = CqTokenCodes(hv, 0, b0 + i, &codes);
      float* o = tmp + i * hp;
      for (int gi = 0; gi < hv.groups; ++gi) {
        const float* row = lut + (gi * K + ReadCqCode(codes, base + gi, hv.bits)) * hp;
        for (int h = 0; h < hp; ++h) o[h] += row[h];
      }
    }
    for (int h = 0; h < G; ++h) {
      for (int64_t i = 0; i < n; ++i) sc[h * n + i] = tmp[i * hp + h];
    }
    return;
  }
  cq_codes::DirectKeyScores(hv, q, G, hd, b0, n, sc);
}

// Stream s's table entry (v, d) sits at tab(s)[v * v_stride + d * d_stride]. k-means, 4-bit:
// stream s is group s, v_table channel-major (groups, c, 16). Residual, 8-bit: byte gi is group
// gi's code, its low nibble (stream 2 gi) indexes stage B (basis rows 16..31), the high nibble
// (stream 2 gi + 1) stage A (rows 0..15), both rows of c channels.
struct NibbleTables {
  const float* v_table;
  const float* basis;
  int c;
  int streams_per_group() const { return basis != nullptr ? 2 : 1; }
  const float* tab(int s) const {
    if (basis == nullptr) return v_table + int64_t{s} * c * 16;
    return basis + (int64_t{s / 2} * 32 + ((s & 1) != 0 ? 0 : 16)) * c;
  }
  int64_t v_stride() const { return basis != nullptr ? c : 1; }
  int64_t d_stride() const { return basis != nullptr ? 1 : 16; }
};

void AttendNibble(const CqHeadView& hv, const float* basis, const float* q, int64_t t0, int64_t t1,
                  const AttnState& st, const CqScoreFn& score, const CqFsTables* fs, bool ref,
                  SumsFn sums_fn) {
  const char* why = CqNibbleUnsupported(hv, basis);
  CQKV_CHECK(*why == '\0',
             "CQ attention with nibble values: {} ({}-bit codes, {} groups from {}, "
             "{} per token)",
             why, hv.bits, hv.groups, hv.g0, hv.n_groups);
  const int G = st.heads, hd = st.head_dim, c = hv.c, groups = hv.groups;
  CQKV_CHECK(groups * c == hd,
             "CQ attention with nibble values: {} groups of {} channels do not "
             "fit head dim {}",
             groups, c, hd);
  if (t0 >= t1) return;
  const int64_t head_bytes = int64_t{groups} * hv.bits / 8, stride = hv.n_groups * hv.bits / 8;
  const int streams = static_cast<int>(2 * head_bytes);
  const NibbleTables nt{hv.v_table, basis, c};
  const int64_t K = int64_t{1} << hv.bits;
  const int hp = CqLanes(G);
  const bool tables = !score && fs == nullptr && t1 - t0 >= K;
  thread_local std::vector<float> lut, sc, tmp, sums, block_sums, m_old, fs_rows;
  if (tables) cq_codes::KeyTables(hv, q, G, hd, hp, lut);
  sc.resize(static_cast<size_t>(G * kBlock));
  tmp.resize(static_cast<size_t>(hp * kBlock));
  sums.assign(static_cast<size_t>(G) * streams * 16, 0.0f);
  block_sums.resize(static_cast<size_t>(G));
  m_old.resize(static_cast<size_t>(G));
  // The pending histograms share acc's softmax reference; reduced against the tables at the end.
  auto flush = [&] {
    const int spg = nt.streams_per_group();
    const int64_t vs = nt.v_stride(), ds = nt.d_stride();
    for (int h = 0; h < G; ++h) {
      float* acc = st.acc + int64_t{h} * hd;
      for (int s = 0; s < streams; ++s) {
        const float* H = sums.data() + (int64_t{h} * streams + s) * 16;
        const float* T = nt.tab(s);
        float* a = acc + (s / spg) * c;
        for (int v = 0; v < 16; ++v) {
          if (H[v] == 0.0f) continue;
          for (int d = 0; d < c; ++d) a[d] += H[v] * T[v * vs + d * ds];
        }
      }
    }
    std::fill(sums.begin(), sums.end(), 0.0f);
  };
  for (int64_t b0 = t0; b0 < t1; b0 += kBlock) {
    const int64_t n = std::min(kBlock, t1 - b0);
    float* p = sc.data();  // head h's n scores at p + h * ps
    int64_t ps = n;
    if (fs != nullptr) {
      ps = CqFsScores(hv, *fs, b0, b0 + n, &fs_rows);
      p = fs_rows.data() + b0 % kCqFsBlock;
    } else if (score) {
      score(b0, n, sc.data());
    } else {
      KeyScores(hv, tables ? lut.data() : nullptr, hp, q, G, hd, b0, n, tmp.data(), sc.data());
    }
    // A block that raises a head's max rescales acc and l by exp(m_old - m_new); the pending
    // histograms are scaled by the same factor (16 x streams floats per head) rather than
    // reduced against the tables (16 x streams x c), so the reduction runs once per call.
    std::copy_n(st.m, G, m_old.data());
    if (ref) {
      for (int h = 0; h < G; ++h) {
        if (p + h * ps != sc.data() + h * n) std::copy_n(p + h * ps, n, sc.data() + h * n);
      }
      p = sc.data();
      ps = n;
      SoftmaxBlockRef(st, p, n);
    } else {
      SoftmaxBlockStrided(st, p, n, ps, block_sums.data());
    }
    for (int h = 0; h < G; ++h) {
      if (st.m[h] == m_old[h] || m_old[h] == -INFINITY) continue;
      const float f = std::exp(m_old[h] - st.m[h]);
      float* H = sums.data() + int64_t{h} * streams * 16;
      for (int64_t k = 0; k < int64_t{streams} * 16; ++k) H[k] *= f;
    }
    CqForEachPiece(hv, b0, n, [&](const CqHeadView& lv, int64_t lt, int64_t pn, int64_t i) {
      sums_fn(lv.v_codes + (lt * lv.n_groups + lv.g0) * lv.bits / 8, stride, head_bytes, pn, p + i,
              ps, G, sums.data());
    });
  }
  flush();
}

}  // namespace

const char* CqNibbleUnsupported(const CqHeadView& hv, const float* residual_basis) {
  if (residual_basis == nullptr && hv.bits != 4) return "k-means nibble values need 4-bit codes";
  if (residual_basis != nullptr && hv.bits != 8) return "residual values need 8-bit codes";
  if ((int64_t{hv.g0} * hv.bits) % 8 != 0 || (hv.n_groups * hv.bits) % 8 != 0 ||
      (int64_t{hv.groups} * hv.bits) % 8 != 0) {
    return "the head's value codes do not start and end on byte boundaries";
  }
  return "";
}

void CqAttendNibble(const CqHeadView& head, const float* residual_basis, const float* q, int64_t t0,
                    int64_t t1, const AttnState& s, const CqScoreFn& score) {
  AttendNibble(head, residual_basis, q, t0, t1, s, score, nullptr, false, NibbleSums);
}

void CqAttendNibbleFastScan(const CqHeadView& head, const float* residual_basis, const float* q,
                            int64_t t0, int64_t t1, const AttnState& s) {
  if (t1 <= t0) return;
  const char* why = CqFsUnsupported(head);
  CQKV_CHECK(*why == '\0', "CQ attention: {} (bits {}, {} groups, page of {} tokens)", why,
             head.bits, head.groups, head.page_tokens);
  thread_local CqFsTables tables;
  CqFsBuildTables(head, q, s.heads, s.head_dim, &tables);
  AttendNibble(head, residual_basis, q, t0, t1, s, nullptr, &tables, false, NibbleSums);
}

void CqAttendNibbleRef(const CqHeadView& head, const float* residual_basis, const float* q,
                       int64_t t0, int64_t t1, const AttnState& s, const CqScoreFn& score) {
  AttendNibble(head, residual_basis, q, t0, t1, s, score, nullptr, true, NibbleSumsRef);
}

}  // namespace cqkv
