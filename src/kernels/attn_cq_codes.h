// Code-layout helpers of the CQ lookup path (kernels/attn_cq.cc): unpacking codes into table
// offsets, byte codes read in place or compacted per page piece, and the joint tables and
// histograms of paired 4-bit codes. Internal to the kernels layer.
#pragma once

#include <algorithm>
#include <cassert>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/attn_cq.h"

namespace cqkv::cq_codes {

constexpr int64_t kSub8 = 512;  // tokens per sub-block of the grouped byte-code path

// off[i * groups + gi] = (gi * 2^b + code(t0 + i, g0 + gi)) * hp for i < n.
inline void UnpackOffsets(const uint8_t* codes, const CqHeadView& h, int64_t t0, int64_t n, int hp,
                          uint32_t* off) {
  const uint32_t k = 1u << h.bits;
  const int groups = h.groups, bits = h.bits;  // locals: `off` may not alias them
  for (int64_t i = 0; i < n; ++i) {
    uint32_t* o = off + i * groups;
    const int64_t base = (t0 + i) * h.n_groups + h.g0;
    for (int gi = 0; gi < groups; ++gi) o[gi] = (gi * k + ReadCqCode(codes, base + gi, bits)) * hp;
  }
}

// Copies this head's packed codes of tokens [t0, t0 + n) to dst, `bytes` per token (the head's
// codes are contiguous and byte-aligned: bits == 8, or bits == 4 with even group offsets).
// Ranges shorter than this keep 4-bit codes unpaired: the pair tables cost 256 entries per
// group pair to build and reduce, about what 256 tokens of paired lookups save.
constexpr int64_t kPairMinTokens = 512;

// A byte of 4-bit codes holds groups 2j (low nibble) and 2j + 1 (high), so it indexes a joint
// table of 256 entries: lut2[j][byte][:] = lut[2j][byte & 15][:] + lut[2j + 1][byte >> 4][:].
inline void PairTables(const float* lut, int pairs, int hp, float* lut2) {
  for (int j = 0; j < pairs; ++j) {
    for (int byte = 0; byte < 256; ++byte) {
      const float* lo = lut + ((2 * j) * 16 + (byte & 15)) * hp;
      const float* hi = lut + ((2 * j + 1) * 16 + (byte >> 4)) * hp;
      float* o = lut2 + (int64_t{j} * 256 + byte) * hp;
      for (int h = 0; h < hp; ++h) o[h] = lo[h] + hi[h];
    }
  }
}

// The per-group histograms (zeroed on entry) as marginals of the joint ones over pairs.
inline void PairMarginals(const float* hist2, int pairs, int hp, float* hist) {
  for (int j = 0; j < pairs; ++j) {
    for (int byte = 0; byte < 256; ++byte) {
      const float* w = hist2 + (int64_t{j} * 256 + byte) * hp;
      float* lo = hist + ((2 * j) * 16 + (byte & 15)) * hp;
      float* hi = hist + ((2 * j + 1) * 16 + (byte >> 4)) * hp;
      for (int h = 0; h < hp; ++h) {
        lo[h] += w[h];
        hi[h] += w[h];
      }
    }
  }
}

inline void CompactCodes(const uint8_t* codes, const CqHeadView& h, int64_t t0, int64_t n,
                         int bytes, uint8_t* dst) {
  const int64_t stride = h.n_groups * h.bits / 8;
  const uint8_t* src = codes + (t0 * h.n_groups + h.g0) * h.bits / 8;
  // Constant sizes for the common heads (8c8b, 4c8b, 4c4b): a variable-size memcpy per token
  // is a library call that costs more than the lookups it feeds.
  auto copy = [&]<int kBytes>() {
    for (int64_t i = 0; i < n; ++i) std::memcpy(dst + i * kBytes, src + i * stride, kBytes);
  };
  if (bytes == 16) return copy.template operator()<16>();
  if (bytes == 32) return copy.template operator()<32>();
  if (bytes == 8) return copy.template operator()<8>();
  for (int64_t i = 0; i < n; ++i) std::memcpy(dst + i * bytes, src + i * stride, bytes);
}

// The byte codes of tokens [t0, t0 + n), `bytes` per token: in place when the head's codes are
// already contiguous (the cq cache keeps one code stream per KV head), else compacted into dst.
inline const uint8_t* ByteCodes(const uint8_t* codes, const CqHeadView& h, int64_t t0, int64_t n,
                                int bytes, uint8_t* dst) {
  if (h.n_groups * h.bits / 8 == bytes) return codes + t0 * bytes;
  CompactCodes(codes, h, t0, n, bytes, dst);
  return dst;
}

// The byte codes of one sub-block of the grouped path as runs of consecutive tokens, one per page
// it touches (one without pages): run r holds n[r] tokens, `bytes` codes each, read in place or
// compacted into dst (ByteCodes). Sub-blocks of kSub8 tokens touch at most kMaxPieces pages of a
// multiple of 256 tokens.
constexpr int kMaxPieces = kSub8 / 256 + 1;
struct BytePieces {
  const uint8_t* codes[kMaxPieces];
  int64_t n[kMaxPieces];
  int count = 0;
};
inline BytePieces SubBlockByteCodes(const CqHeadView& h, int kind, int64_t b0, int64_t bn,
                                    int bytes, uint8_t* dst) {
  BytePieces p;
  CqForEachPiece(h, b0, bn, [&](const CqHeadView& lv, int64_t lt, int64_t n, int64_t i) {
    assert(p.count < kMaxPieces);
    p.codes[p.count] =
        ByteCodes(kind == 0 ? lv.k_codes : lv.v_codes, lv, lt, n, bytes, dst + i * bytes);
    p.n[p.count++] = n;
  });
  return p;
}

// Per-group key tables of the additive and nibble kernels:
// lut[(gi * 2^b + code) * hp + h] = q_h . centroid_gi[code] (zero for padding heads).
inline void KeyTables(const CqHeadView& hv, const float* q, int G, int hd, int hp,
                      std::vector<float>& lut) {
  const int64_t K = int64_t{1} << hv.bits;
  lut.assign(static_cast<size_t>(hv.groups * K * hp), 0.0f);
  // One head's row of a group at a time over contiguous centroid channels (vectorisable), then
  // interleaved into the head-innermost table (the strided form costs ~30 ns per token at 4096
  // tokens).
  std::vector<float> row(static_cast<size_t>(K));
  for (int gi = 0; gi < hv.groups; ++gi) {
    for (int h = 0; h < G; ++h) {
      const float* qg = q + int64_t{h} * hd + gi * hv.c;
      std::fill(row.begin(), row.end(), 0.0f);
      for (int j = 0; j < hv.c; ++j) {
        const float* col = hv.k_table + (int64_t{gi} * hv.c + j) * K;
        const float qj = qg[j];
        for (int64_t code = 0; code < K; ++code) row[code] += qj * col[code];
      }
      float* o = lut.data() + gi * K * hp + h;
      for (int64_t code = 0; code < K; ++code) o[code * hp] = row[code];
    }
  }
}

// Key scores sc[h * n + i] of tokens [b0, b0 + n) from each token's centroids, for ranges too
// short to pay for key tables (additive and nibble kernels).
inline void DirectKeyScores(const CqHeadView& hv, const float* q, int G, int hd, int64_t b0,
                            int64_t n, float* sc) {
  const int64_t K = int64_t{1} << hv.bits;
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* codes;
    const int64_t base = CqTokenCodes(hv, 0, b0 + i, &codes);
    for (int h = 0; h < G; ++h) sc[h * n + i] = 0.0f;
    for (int gi = 0; gi < hv.groups; ++gi) {
      const float* cent =
          hv.k_table + int64_t{gi} * hv.c * K + ReadCqCode(codes, base + gi, hv.bits);
      for (int h = 0; h < G; ++h) {
        const float* qg = q + int64_t{h} * hd + gi * hv.c;
        float s = 0;
        for (int j = 0; j < hv.c; ++j) s += qg[j] * cent[j * K];
        sc[h * n + i] += s;
      }
    }
  }
}

}  // namespace cqkv::cq_codes
