// The target-independent parts of fast-scan key scoring (kernels/attn_cq_fastscan.h): table
// quantisation, the scalar reference of the approximate scores, exact rescoring of each block's
// candidates and the attention composed with CqAttend's value path. The vectorised block
// scoring is in attn_cq_fastscan.cc.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/attn_cq_fastscan.h"
#include "util/error.h"

namespace cqkv {
namespace {

// The codes of block blk (whole, 64 tokens) in hv's key stream: its page's region, or the stream.
const uint8_t* BlockCodes(const CqHeadView& hv, int64_t blk) {
  const int64_t bytes = CqFsBlockBytes(hv.groups, hv.bits);
  if (hv.k_pages == nullptr) return hv.k_codes + blk * bytes;
  const int64_t t = blk * kCqFsBlock, page = t / hv.page_tokens;
  return hv.k_pages[page] + (t - page * hv.page_tokens) / kCqFsBlock * bytes;
}

}  // namespace

const char* CqFsUnsupported(const CqHeadView& hv) {
  if (hv.bits != 8 && hv.bits != 4) return "fast-scan keys need 4- or 8-bit codes";
  if (hv.bits == 4 && hv.groups % 2 != 0) return "fast-scan 4-bit keys need an even group count";
  if (hv.g0 != 0 || hv.n_groups != hv.groups) return "fast-scan keys need one head per stream";
  if (hv.groups * 255 > 65535) return "fast-scan keys allow at most 257 groups per head";
  if (hv.k_pages != nullptr && hv.page_tokens % kCqFsBlock != 0) {
    return "fast-scan keys need pages of whole 64-token blocks";
  }
  return "";
}

void CqFsBuildTables(const CqHeadView& hv, const float* q, int heads, int head_dim,
                     CqFsTables* tables) {
  CqFsTables& t = *tables;
  const int groups = hv.groups, c = hv.c, k = 1 << hv.bits;
  t.heads = heads;
  t.groups = groups;
  t.bits = hv.bits;
  t.lut.resize(static_cast<size_t>(heads) * groups * k);
  t.qlut.resize(t.lut.size());
  t.scale.resize(heads);
  t.offset.resize(heads);
  t.bound.resize(heads);
  std::vector<float> lo(groups), hi(groups);
  for (int h = 0; h < heads; ++h) {
    float range = 0, offset = 0, magnitude = 0;
    for (int g = 0; g < groups; ++g) {
      float* l = t.lut.data() + (int64_t{h} * groups + g) * k;
      const float* qg = q + int64_t{h} * head_dim + g * c;
      const float* tab = hv.k_table + int64_t{g} * c * k;  // (c, k)
      std::fill(l, l + k, 0.0f);
      for (int j = 0; j < c; ++j) {
        for (int e = 0; e < k; ++e) l[e] += qg[j] * tab[j * k + e];
      }
      lo[g] = *std::min_element(l, l + k);
      hi[g] = *std::max_element(l, l + k);
      range = std::max(range, hi[g] - lo[g]);
      offset += lo[g];
      magnitude += std::max(std::fabs(lo[g]), std::fabs(hi[g]));
    }
    const float scale = range / 255.0f, inv = scale > 0 ? 1.0f / scale : 0.0f;
    for (int g = 0; g < groups; ++g) {
      const float* l = t.lut.data() + (int64_t{h} * groups + g) * k;
      uint8_t* ql = t.qlut.data() + (int64_t{h} * groups + g) * k;
      for (int e = 0; e < k; ++e) {
        ql[e] = static_cast<uint8_t>(std::min(255.0f, std::nearbyint((l[e] - lo[g]) * inv)));
      }
    }
    t.scale[h] = scale;
    t.offset[h] = offset;
    // groups * scale / 2 from rounding the entries; the slack covers fp32 rounding of the
    // offset sum, of the exact score and of scale * sum + offset (a few ulps of the magnitude).
    t.bound[h] = groups * scale * 0.5f + 4e-6f * (magnitude + 1.0f);
  }
}

void CqFsApproxScoresRef(const CqHeadView& hv, const CqFsTables& t, int64_t blk0, int64_t nb,
                         float* scores, int64_t stride) {
  const int groups = t.groups, k = 1 << t.bits;
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* codes = BlockCodes(hv, blk0 + b);
    for (int h = 0; h < t.heads; ++h) {
      const uint8_t* ql = t.qlut.data() + int64_t{h} * groups * k;
      for (int i = 0; i < kCqFsBlock; ++i) {
        uint32_t sum = 0;
        for (int g = 0; g < groups; ++g)
          sum += ql[g * k + ReadCqCode(codes, CqFsKeyIndex(i, g, groups, t.bits), t.bits)];
        scores[h * stride + b * kCqFsBlock + i] =
            std::fma(t.scale[h], static_cast<float>(sum), t.offset[h]);
      }
    }
  }
}

void CqFsBlockScores(const CqHeadView& hv, const CqFsTables& t, int64_t blk, int64_t lo, int64_t hi,
                     float* scores) {
  CqFsApproxScores(hv, t, blk, 1, scores, kCqFsBlock);
  const int64_t first = std::max<int64_t>(0, lo - blk * kCqFsBlock);
  const int64_t last = std::min<int64_t>(kCqFsBlock, hi - blk * kCqFsBlock);
  if (first >= last) return;
  const uint8_t* codes = BlockCodes(hv, blk);
  const int groups = t.groups, k = 1 << t.bits;
  for (int h = 0; h < t.heads; ++h) {
    float* s = scores + h * kCqFsBlock;
    const float top = *std::max_element(s + first, s + last);
    const float cut = top - 2.0f * t.bound[h];
    const float* l = t.lut.data() + int64_t{h} * groups * k;
    for (int64_t i = first; i < last; ++i) {
      if (s[i] < cut) continue;
      float exact = 0;
      for (int g = 0; g < groups; ++g)
        exact += l[g * k + ReadCqCode(codes, CqFsKeyIndex(i, g, groups, t.bits), t.bits)];
      s[i] = exact;
    }
  }
}

void CqAttendFastScan(const CqHeadView& hv, const float* q, int64_t t0, int64_t t1,
                      const AttnState& s) {
  if (t1 <= t0) return;
  const char* why = CqFsUnsupported(hv);
  CQKV_CHECK(*why == '\0', "CQ attention: {} (bits {}, {} groups, page of {} tokens)", why, hv.bits,
             hv.groups, hv.page_tokens);
  thread_local CqFsTables tables;
  thread_local std::vector<float> block;  // (heads, 64): scores of block `cached`
  CqFsBuildTables(hv, q, s.heads, s.head_dim, &tables);
  block.resize(static_cast<size_t>(s.heads) * kCqFsBlock);
  int64_t cached = -1;
  // CqAttend asks for runs of tokens that need not start on a block: a block's scores are made
  // once (with their candidates rescored over the whole call range) and reused across runs.
  const CqScoreFn score = [&](int64_t b0, int64_t n, float* out) {
    for (int64_t i = 0; i < n;) {
      const int64_t t = b0 + i, blk = t / kCqFsBlock;
      if (blk != cached) {
        CqFsBlockScores(hv, tables, blk, t0, t1, block.data());
        cached = blk;
      }
      const int64_t at = t - blk * kCqFsBlock, m = std::min(n - i, kCqFsBlock - at);
      for (int h = 0; h < s.heads; ++h) {
        std::memcpy(out + h * n + i, block.data() + h * kCqFsBlock + at, sizeof(float) * m);
      }
      i += m;
    }
  };
  CqAttend(hv, q, t0, t1, s, score);
}

}  // namespace cqkv
