// Fast-scan key scoring for CQ decode attention (FAISS fast-scan style, post-RoPE keys): a KV
// head's key codes are stored transposed in blocks of 64 tokens and each query head's table of
// q . centroid is quantised to 8 bits, so a block's scores are byte lookups held in vector
// registers and summed in 16-bit lanes instead of one random table load per token and group.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/attn_cq.h"

namespace cqkv {

constexpr int64_t kCqFsBlock = 64;  // tokens per transposed block

// Key-code layout of the fast-scan option (`cq:PATH:fs`), for 8- and 4-bit codes. A stream holds
// one KV head's codes (CqHeadView g0 = 0, n_groups = groups) in blocks of 64 tokens, block B =
// tokens [64B, 64B + 64); a block is `groups` rows of 64 bytes for 8-bit codes, or groups / 2
// rows for 4-bit codes (row j: low nibble group 2j, high nibble group 2j + 1). Within a row,
// token i sits at byte CqFsSlot(i) = 2 (i % 32) + i / 32: the low bytes of the row's 16-bit lanes
// are tokens 0..31 in order and the high bytes tokens 32..63, so splitting a lookup result into
// 16-bit lanes by byte yields consecutive tokens on every vector width. A block has the same
// bytes as 64 tokens of the token-major layout, so pages keep their size.
inline int CqFsSlot(int i) { return 2 * (i & 31) + (i >> 5); }

// Index of code (token t, group gi) in a fast-scan stream, as ReadCqCode / PutCqCode count codes
// (bytes for 8 bits, nibbles for 4).
inline int64_t CqFsKeyIndex(int64_t t, int gi, int groups, int bits) {
  const int64_t block = t / kCqFsBlock;
  const int slot = CqFsSlot(static_cast<int>(t % kCqFsBlock));
  if (bits == 8) return (block * groups + gi) * kCqFsBlock + slot;
  return 2 * ((block * (groups / 2) + gi / 2) * kCqFsBlock + slot) + (gi & 1);
}
inline int64_t CqFsBlockBytes(int groups, int bits) { return kCqFsBlock * groups * bits / 8; }

// Empty when `hv` can use the fast-scan kernel, else why not: codes of 4 or 8 bits (an even
// group count for 4), one head per stream, and groups * 255 <= 65535 so the 16-bit sums of a
// token's quantised entries never saturate.
const char* CqFsUnsupported(const CqHeadView& hv);

// One call's query-side tables. Per query head h and group g the fp32 table lut = q_h . centroid
// is quantised with one scale per head and one offset per (head, group):
//   lut[h][g][e] ~= scale[h] * qlut[h][g][e] + lo[h][g],  qlut = round((lut - lo) / scale),
// lo = the group's minimum, scale = (largest group range) / 255. A shared scale per head lets a
// token's entries be summed as integers (approx = scale * sum + offset, offset = sum_g lo); one
// per query head, not per GQA group, costs nothing (each head needs its own lookups anyway) and
// keeps the scale of a head with small scores small. Each entry is off by <= scale / 2, so an
// approximate score is within bound[h] = groups * scale / 2 (+ fp32 slack) of the exact one.
struct CqFsTables {
  int heads = 0, groups = 0, bits = 0;
  std::vector<float> lut;     // (heads, groups, 2^b) exact fp32 entries, for rescoring
  std::vector<uint8_t> qlut;  // (heads, groups, 2^b) quantised entries
  std::vector<float> scale;   // (heads)
  std::vector<float> offset;  // (heads)
  std::vector<float> bound;   // (heads) bound on |approximate - exact| score
};
void CqFsBuildTables(const CqHeadView& hv, const float* q, int heads, int head_dim,
                     CqFsTables* tables);

// Approximate scores (scale * sum + offset) of blocks [blk0, blk0 + nb) of the fast-scan key
// stream of hv (paged or not): scores (heads, nb * 64) row-major with row stride `stride`.
// Vectorised (AVX-512 VBMI two-table byte permutes for 8-bit codes, byte shuffles for 4-bit).
void CqFsApproxScores(const CqHeadView& hv, const CqFsTables& t, int64_t blk0, int64_t nb,
                      float* scores, int64_t stride);
// Scalar reference of the same: the same integer sums, converted with a fused multiply-add
// (targets without FMA round once more: within 1 ulp).
void CqFsApproxScoresRef(const CqHeadView& hv, const CqFsTables& t, int64_t blk0, int64_t nb,
                         float* scores, int64_t stride);

// The scores the kernel uses for tokens [t0, t1): (heads, stride) row-major in *scores, token t
// at column t - 64 * (t0 / 64), stride returned (whole blocks; columns outside the range are
// unspecified). Approximate, except that per head every token whose approximate score is within
// 2 * bound of the range's approximate max is rescored exactly from the fp32 tables. The token
// of the exact maximum is always among them (its approximate score is >= exact max - bound >=
// approximate max - 2 bound) and every other score stays below it, so the max over the range is
// the exact max (up to fp32 summation order).
int64_t CqFsScores(const CqHeadView& hv, const CqFsTables& t, int64_t t0, int64_t t1,
                   std::vector<float>* scores);

// CqFsScores for one run of the lookup path (CqLaneScoreFn): the scores of tokens [t0, t0 + n)
// token-major, lanes[i * hp + h] (0 for h >= heads), approximate except that each head's tokens
// within 2 * bound of the run's approximate max are rescored exactly, so the run's max is exact.
// Written straight from the 16-bit sums (four heads of four lanes: one interleaved store per
// vector), with no (heads, n) rows in between. lanes needs room for n rounded up to a multiple
// of 64 plus 64 rows.
void CqFsLaneScores(const CqHeadView& hv, const CqFsTables& t, int64_t t0, int64_t n, int hp,
                    float* lanes);
// The codes of block blk (whole, 64 tokens) of hv's fast-scan key stream (paged or not).
const uint8_t* CqFsBlockCodes(const CqHeadView& hv, int64_t blk);
// Exact fp32 score of token i of a block (codes at the block's start) from one head's fp32
// tables l (groups, 2^b).
float CqFsExactScore(const uint8_t* codes, int i, const float* l, int groups, int bits);

// CqAttend with fast-scan key scores (hv's keys in the layout above, values token-major as
// usual), fused: each run's scores are written by CqFsLaneScores into the lookup path's own
// buffer (CqAttendLanes), where the softmax and the value histograms read them; ranges shorter
// than 2^b / 2 tokens go to CqAttend's direct path with the scores handed over per block. Accumulates into s
// the attention of s.heads queries q over tokens [t0, t1). Throws cqkv::Error when
// CqFsUnsupported(hv). Error: every score is within E = bound[h] of the exact one, so the log-ratio
// of approximate to exact softmax weights varies by at most 2E over the tokens, the weights' total
// variation distance is <= tanh(E / 2), and each normalised output channel (acc / l; weights sum to
// 1 in both) is off by at most tanh(E / 2) * (max_t v_t - min_t v_t) over that channel. The bound
// holds for any split of the tokens into merged calls.
void CqAttendFastScan(const CqHeadView& hv, const float* q, int64_t t0, int64_t t1,
                      const AttnState& s);

}  // namespace cqkv
