// The target-independent parts of fast-scan key scoring (kernels/attn_cq_fastscan.h): the
// scalar reference of the approximate scores, exact rescoring of each block's
// candidates and the attention composed with CqAttend's value path. The vectorised block
// scoring is in attn_cq_fastscan.cc.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/attn_cq_fastscan.h"
#include "util/error.h"

namespace cqkv {
const uint8_t* CqFsBlockCodes(const CqHeadView& hv, int64_t blk) {
  const int64_t bytes = CqFsBlockBytes(hv.groups, hv.bits);
  if (hv.k_pages == nullptr) return hv.k_codes + blk * bytes;
  const int64_t t = blk * kCqFsBlock, page = t / hv.page_tokens;
  return hv.k_pages[page] + (t - page * hv.page_tokens) / kCqFsBlock * bytes;
}

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

void CqFsApproxScoresRef(const CqHeadView& hv, const CqFsTables& t, int64_t blk0, int64_t nb,
                         float* scores, int64_t stride) {
  const int groups = t.groups, k = 1 << t.bits;
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* codes = CqFsBlockCodes(hv, blk0 + b);
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

float CqFsExactScore(const uint8_t* codes, int i, const float* l, int groups, int bits) {
  const int slot = CqFsSlot(i);
  float s = 0;
  if (bits == 8) {
    for (int g = 0; g < groups; ++g) s += l[g * 256 + codes[g * kCqFsBlock + slot]];
    return s;
  }
  for (int j = 0; j < groups / 2; ++j) {
    const uint32_t byte = codes[j * kCqFsBlock + slot];
    s += l[(2 * j) * 16 + (byte & 15u)];
    s += l[(2 * j + 1) * 16 + (byte >> 4)];
  }
  return s;
}

int64_t CqFsScores(const CqHeadView& hv, const CqFsTables& t, int64_t t0, int64_t t1,
                   std::vector<float>* scores) {
  const int64_t blk0 = t0 / kCqFsBlock, nb = (t1 + kCqFsBlock - 1) / kCqFsBlock - blk0;
  const int64_t stride = nb * kCqFsBlock, first = t0 - blk0 * kCqFsBlock,
                last = t1 - blk0 * kCqFsBlock;
  scores->resize(static_cast<size_t>(t.heads) * stride);
  CqFsApproxScores(hv, t, blk0, nb, scores->data(), stride);
  const int k = 1 << t.bits;
  for (int h = 0; h < t.heads; ++h) {
    float* s = scores->data() + h * stride;
    float cut;
    BlockMax(s + first, 1, last - first, 0, &cut);
    cut -= 2.0f * t.bound[h];
    const float* l = t.lut.data() + int64_t{h} * t.groups * k;
    for (int64_t i = first; i < last; ++i) {
      if (s[i] < cut) continue;
      const int64_t blk = blk0 + i / kCqFsBlock;
      s[i] = CqFsExactScore(CqFsBlockCodes(hv, blk), static_cast<int>(i % kCqFsBlock), l, t.groups,
                            t.bits);
    }
  }
  return stride;
}

void CqAttendFastScan(const CqHeadView& hv, const float* q, int64_t t0, int64_t t1,
                      const AttnState& s) {
  if (t1 <= t0) return;
  const char* why = CqFsUnsupported(hv);
  CQKV_CHECK(*why == '\0', "CQ attention: {} (bits {}, {} groups, page of {} tokens)", why, hv.bits,
             hv.groups, hv.page_tokens);
  thread_local CqFsTables tables;
  CqFsBuildTables(hv, q, s.heads, s.head_dim, &tables);
  if (2 * (t1 - t0) < (int64_t{1} << hv.bits)) {
    // Short ranges take CqAttend's direct path (no histograms to clear and reduce), which reads
    // scores as (heads, n) rows per block of 64: the hand-over costs little at this length.
    thread_local std::vector<float> rows;
    const CqScoreFn score = [&](int64_t b0, int64_t n, float* out) {
      const int64_t stride = CqFsScores(hv, tables, b0, b0 + n, &rows), at = b0 % kCqFsBlock;
      for (int h = 0; h < s.heads; ++h) {
        std::memcpy(out + h * n, rows.data() + h * stride + at, sizeof(float) * n);
      }
    };
    return CqAttendDirect(hv, q, t0, t1, s, score);
  }
  // The lookup path asks for a run of <= 512 tokens at a time; each run's scores (and its exact
  // candidates) are made on demand straight into its buffer, so they stay in L1 and every run's
  // max is exact, hence the range's.
  CqAttendLanes(hv, q, t0, t1, s, [&](int64_t b0, int64_t n, int hp, float* lanes) {
    CqFsLaneScores(hv, tables, b0, n, hp, lanes);
  });
}

}  // namespace cqkv
