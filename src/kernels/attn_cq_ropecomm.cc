// Highway implementation of RopeCommScores (kernels/attn_cq_ropecomm.h, which states the math),
// the phase tables and the scalar reference.
//
// Per block of kBlock tokens: the queries are turned back by the block start (two table
// rotations per head) into qf, zero-padded to a multiple of 4 heads. Per token: the pre-RoPE
// centroids of the token's codes are copied into one head-sized row (one fixed-size copy per
// group from the centroid-major table), turned by R(tau) in registers and dotted with 4 heads at a
// time, so a KV head's rotation is shared by its query heads.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#ifndef HWY_DISABLED_TARGETS
#define HWY_DISABLED_TARGETS (HWY_SSSE3 | HWY_SSE4 | HWY_AVX3_DL)
#endif

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/attn_cq_ropecomm.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
// Must come after foreach_target.h.
#include <hwy/highway.h>

#include "kernels/attn_cq_ropecomm.h"
#include "util/error.h"

#ifndef CQKV_KERNELS_ATTN_CQ_ROPECOMM_HELPERS_
#define CQKV_KERNELS_ATTN_CQ_ROPECOMM_HELPERS_
namespace cqkv {
namespace {

// The pre-RoPE key of token t (codes at stream index `base`) into key[0, groups * c): one copy of
// kC floats per group, a constant size so it compiles to plain loads and stores.
template <int kC>
inline void DecodeKeyFixed(const uint8_t* codes, int64_t base, int groups, int bits,
                           const float* centroids, float* key) {
  for (int gi = 0; gi < groups; ++gi) {
    const uint32_t code = ReadCqCode(codes, base + gi, bits);
    std::memcpy(key + gi * kC, centroids + ((int64_t{gi} << bits) + code) * kC, kC * sizeof(float));
  }
}

inline void DecodeKey(const uint8_t* codes, int64_t base, int groups, int c, int bits,
                      const float* centroids, float* key) {
  switch (c) {
    case 2:
      return DecodeKeyFixed<2>(codes, base, groups, bits, centroids, key);
    case 4:
      return DecodeKeyFixed<4>(codes, base, groups, bits, centroids, key);
    case 8:
      return DecodeKeyFixed<8>(codes, base, groups, bits, centroids, key);
    case 16:
      return DecodeKeyFixed<16>(codes, base, groups, bits, centroids, key);
    default:
      for (int gi = 0; gi < groups; ++gi) {
        const uint32_t code = ReadCqCode(codes, base + gi, bits);
        std::memcpy(key + gi * c, centroids + ((int64_t{gi} << bits) + code) * c,
                    c * sizeof(float));
      }
  }
}

// One rotation row pair (cos row, sin row) of R(angle scale * w_p) from ApplyRope on unit pairs,
// so the angles are the forward pass's (NORM: pair p is channels 2p, 2p + 1).
void PhaseRow(int head_dim, int64_t pos, const RopeParams& p, float* row) {
  float* cs = row;
  float* sn = row + head_dim;
  std::vector<float> unit(static_cast<size_t>(head_dim));
  for (int j = 0; j < head_dim; j += 2) {
    unit[j] = 1.0f;
    unit[j + 1] = 0.0f;
  }
  ApplyRope(unit.data(), 1, head_dim, pos, p);
  for (int j = 0; j < head_dim; j += 2) {
    cs[j] = cs[j + 1] = unit[j];
    sn[j] = -unit[j + 1];
    sn[j + 1] = unit[j + 1];
  }
}

}  // namespace
}  // namespace cqkv
#endif  // CQKV_KERNELS_ATTN_CQ_ROPECOMM_HELPERS_

HWY_BEFORE_NAMESPACE();
namespace cqkv {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// x <- R x (inverse: R^T x) for one head-sized row, rotation rows cs/sn (see RopeCommPhases).
template <class D>
HWY_INLINE void RotateRow(D d, const float* HWY_RESTRICT cs, const float* HWY_RESTRICT sn,
                          const float* src, float* dst, int n, bool inverse) {
  int j = 0;
#if HWY_TARGET != HWY_SCALAR  // one lane has no pair to swap: the scalar target takes the tail
  const int N = static_cast<int>(hn::Lanes(d));
  for (; j + N <= n; j += N) {
    const auto x = hn::LoadU(d, src + j);
    const auto sw = hn::Mul(hn::Shuffle2301(x), hn::LoadU(d, sn + j));
    const auto c = hn::Mul(x, hn::LoadU(d, cs + j));
    hn::StoreU(inverse ? hn::Sub(c, sw) : hn::Add(c, sw), d, dst + j);
  }
#else
  (void)d;
#endif
  for (; j < n; j += 2) {  // pairs past the last full vector
    const float x0 = src[j], x1 = src[j + 1];
    const float s = inverse ? -sn[j + 1] : sn[j + 1];
    dst[j] = x0 * cs[j] - x1 * s;
    dst[j + 1] = x0 * s + x1 * cs[j];
  }
}

#if HWY_TARGET != HWY_SCALAR
// The 4 sums of the lanes of a0..a3 into s[0..3]: pairs of heads interleaved within each
// 128-bit block, then 64-bit halves, leave [h0, h1, h2, h3] partial sums per block, added up
// in scalars: ~8 vector ops for the 4 heads where 4 SumOfLanes cost ~4x that.
template <class D, class V>
HWY_INLINE void SumLanes4(D d, V a0, V a1, V a2, V a3, float* HWY_RESTRICT s) {
  const hn::Repartition<double, D> dd;
  const V s01 = hn::Add(hn::InterleaveLower(d, a0, a1), hn::InterleaveUpper(d, a0, a1));
  const V s23 = hn::Add(hn::InterleaveLower(d, a2, a3), hn::InterleaveUpper(d, a2, a3));
  const auto lo = hn::InterleaveLower(dd, hn::BitCast(dd, s01), hn::BitCast(dd, s23));
  const auto hi = hn::InterleaveUpper(dd, hn::BitCast(dd, s01), hn::BitCast(dd, s23));
  HWY_ALIGN float blocks[HWY_MAX_BYTES / sizeof(float)];
  hn::Store(hn::Add(hn::BitCast(d, lo), hn::BitCast(d, hi)), d, blocks);
  const int n = static_cast<int>(hn::Lanes(d));
  for (int e = 0; e < 4; ++e) s[e] = blocks[e];
  for (int b = 4; b < n; b += 4) {
    for (int e = 0; e < 4; ++e) s[e] += blocks[b + e];
  }
}
// Scores of two consecutive tokens (decoded keys at key and key + hd, in-block phases cs0/sn0
// and cs1/sn1) against every head of qf (padded to quads, hd a multiple of the lanes), written to
// out[h * n] and out[h * n + 1].
template <class D>
HWY_INLINE void DotTwo(D d, const float* HWY_RESTRICT key, const float* HWY_RESTRICT cs0,
                       const float* HWY_RESTRICT sn0, const float* HWY_RESTRICT cs1,
                       const float* HWY_RESTRICT sn1, const float* HWY_RESTRICT qf, int hd,
                       int heads, float* HWY_RESTRICT out, int64_t n) {
  const int N = static_cast<int>(hn::Lanes(d));
  for (int h0 = 0; h0 < heads; h0 += 4) {
    const float* q0 = qf + int64_t{h0} * hd;
    auto a0 = hn::Zero(d), a1 = hn::Zero(d), a2 = hn::Zero(d), a3 = hn::Zero(d);
    auto b0 = hn::Zero(d), b1 = hn::Zero(d), b2 = hn::Zero(d), b3 = hn::Zero(d);
    for (int j = 0; j < hd; j += N) {
      const auto x = hn::LoadU(d, key + j);
      const auto y = hn::LoadU(d, key + hd + j);
      const auto rx =
          hn::MulAdd(x, hn::LoadU(d, cs0 + j), hn::Mul(hn::Shuffle2301(x), hn::LoadU(d, sn0 + j)));
      const auto ry =
          hn::MulAdd(y, hn::LoadU(d, cs1 + j), hn::Mul(hn::Shuffle2301(y), hn::LoadU(d, sn1 + j)));
      auto qv = hn::LoadU(d, q0 + j);
      a0 = hn::MulAdd(rx, qv, a0);
      b0 = hn::MulAdd(ry, qv, b0);
      qv = hn::LoadU(d, q0 + hd + j);
      a1 = hn::MulAdd(rx, qv, a1);
      b1 = hn::MulAdd(ry, qv, b1);
      qv = hn::LoadU(d, q0 + 2 * hd + j);
      a2 = hn::MulAdd(rx, qv, a2);
      b2 = hn::MulAdd(ry, qv, b2);
      qv = hn::LoadU(d, q0 + 3 * hd + j);
      a3 = hn::MulAdd(rx, qv, a3);
      b3 = hn::MulAdd(ry, qv, b3);
    }
    float sa[4], sb[4];
    SumLanes4(d, a0, a1, a2, a3, sa);
    SumLanes4(d, b0, b1, b2, b3, sb);
    for (int e = 0; e < 4 && h0 + e < heads; ++e) {
      out[int64_t{h0 + e} * n] = sa[e];
      out[int64_t{h0 + e} * n + 1] = sb[e];
    }
  }
}
#endif

void RopeCommScoresImpl(const RopeCommKeys& keys, const float* q, int heads, int64_t t0, int64_t n,
                        float* scores) {
  const hn::ScalableTag<float> d;
#if HWY_TARGET != HWY_SCALAR
  const int N = static_cast<int>(hn::Lanes(d));
#else
  const int N = 0;  // no vector loop (see RotateRow)
#endif
  const RopeCommPhases& ph = *keys.phases;
  const CqHeadView& hv = keys.codes;
  const int hd = ph.head_dim(), groups = hv.groups, c = hv.c, bits = hv.bits;
  const int hq = (heads + 3) / 4 * 4;  // heads padded to quads
  const int vec_end = N > 0 ? hd / N * N : 0;
  thread_local std::vector<float> qf_v, key_v, tmp_v;
  qf_v.assign(static_cast<size_t>(hq) * hd, 0.0f);
  // A block's keys are decoded before any is read back: loading a vector that straddles
  // several just-stored group copies would stall on store forwarding.
  key_v.resize(static_cast<size_t>(RopeCommPhases::kBlock) * hd);
  tmp_v.resize(static_cast<size_t>(hd));
  float* HWY_RESTRICT qf = qf_v.data();
  float* HWY_RESTRICT key = key_v.data();
  for (int64_t i = 0; i < n;) {
    const int64_t t = t0 + i;
    const int64_t m = t / RopeCommPhases::kBlock, start = m * RopeCommPhases::kBlock;
    const int64_t run = std::min(n - i, start + RopeCommPhases::kBlock - t);
    // qf = R(-start) q = R(-lo) R(-hi) q.
    const int64_t hi = m / RopeCommPhases::kLo;
    const int lo = static_cast<int>(m % RopeCommPhases::kLo);
    for (int h = 0; h < heads; ++h) {
      RotateRow(d, ph.HiCos(hi), ph.HiSin(hi), q + int64_t{h} * hd, tmp_v.data(), hd, true);
      RotateRow(d, ph.LoCos(lo), ph.LoSin(lo), tmp_v.data(), qf + int64_t{h} * hd, hd, true);
    }
    for (int64_t r = 0; r < run; ++r) {
      const uint8_t* codes;
      const int64_t base = CqTokenCodes(hv, 0, t + r, &codes);
      DecodeKey(codes, base, groups, c, bits, keys.centroids, key + r * hd);
    }
    for (int64_t r = 0; r < run;) {
      const int64_t tau = t + r - start;
      // Two tokens at a time where possible: each query load then serves both.
      if (r + 1 < run && vec_end == hd) {
#if HWY_TARGET != HWY_SCALAR
        DotTwo(d, key + r * hd, ph.InCos(static_cast<int>(tau)), ph.InSin(static_cast<int>(tau)),
               ph.InCos(static_cast<int>(tau + 1)), ph.InSin(static_cast<int>(tau + 1)), qf, hd,
               heads, scores + i + r, n);
#endif
        r += 2;
        continue;
      }
      const float* HWY_RESTRICT key_r = key + r * hd;
      const float* HWY_RESTRICT cs = ph.InCos(static_cast<int>(tau));
      const float* HWY_RESTRICT sn = ph.InSin(static_cast<int>(tau));
      for (int h0 = 0; h0 < hq; h0 += 4) {
        const float* q0 = qf + int64_t{h0} * hd;
        float s[4] = {0, 0, 0, 0};
#if HWY_TARGET != HWY_SCALAR
        auto a0 = hn::Zero(d), a1 = hn::Zero(d), a2 = hn::Zero(d), a3 = hn::Zero(d);
        for (int j = 0; j < vec_end; j += N) {
          const auto x = hn::LoadU(d, key_r + j);
          const auto rk = hn::MulAdd(x, hn::LoadU(d, cs + j),
                                     hn::Mul(hn::Shuffle2301(x), hn::LoadU(d, sn + j)));
          a0 = hn::MulAdd(rk, hn::LoadU(d, q0 + j), a0);
          a1 = hn::MulAdd(rk, hn::LoadU(d, q0 + hd + j), a1);
          a2 = hn::MulAdd(rk, hn::LoadU(d, q0 + 2 * hd + j), a2);
          a3 = hn::MulAdd(rk, hn::LoadU(d, q0 + 3 * hd + j), a3);
        }
        SumLanes4(d, a0, a1, a2, a3, s);
#endif
        for (int j = vec_end; j < hd; j += 2) {  // pairs past the last full vector
          const float r0 = key_r[j] * cs[j] + key_r[j + 1] * sn[j];
          const float r1 = key_r[j + 1] * cs[j] + key_r[j] * sn[j + 1];
          for (int e = 0; e < 4; ++e) s[e] += r0 * q0[e * hd + j] + r1 * q0[e * hd + j + 1];
        }
        for (int e = 0; e < 4 && h0 + e < heads; ++e) scores[int64_t{h0 + e} * n + i + r] = s[e];
      }
      ++r;
    }
    i += run;
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace cqkv
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace cqkv {

HWY_EXPORT(RopeCommScoresImpl);

RopeCommPhases::RopeCommPhases(int head_dim, int64_t max_pos, const RopeParams& p)
    : head_dim_(head_dim), max_pos_(max_pos) {
  CQKV_CHECK(p.type == RopeType::kNorm,
             "rope-comm keys need NORM RoPE pairing (consecutive channel pairs); this model "
             "rotates (i, i + d/2) (NEOX), whose pairs straddle CQ groups");
  CQKV_CHECK(head_dim >= 2 && head_dim % 2 == 0 && max_pos >= 1,
             "rope-comm phases: head dim {} must be even and positive, positions {} >= 1", head_dim,
             max_pos);
  CheckRopeParams(p, head_dim, "rope-comm phases");
  const int64_t row = 2 * int64_t{head_dim};
  const int64_t hi_rows = (max_pos + int64_t{kBlock} * kLo - 1) / (int64_t{kBlock} * kLo);
  in_.resize(static_cast<size_t>(kBlock * row));
  lo_.resize(static_cast<size_t>(kLo * row));
  hi_.resize(static_cast<size_t>(hi_rows * row));
  for (int tau = 0; tau < kBlock; ++tau) PhaseRow(head_dim, tau, p, in_.data() + tau * row);
  for (int lo = 0; lo < kLo; ++lo)
    PhaseRow(head_dim, int64_t{lo} * kBlock, p, lo_.data() + lo * row);
  for (int64_t hi = 0; hi < hi_rows; ++hi) {
    PhaseRow(head_dim, hi * kBlock * kLo, p, hi_.data() + hi * row);
  }
}

void RopeCommScores(const RopeCommKeys& keys, const float* q, int heads, int64_t t0, int64_t n,
                    float* scores) {
  if (n <= 0) return;
  CQKV_CHECK(keys.phases != nullptr && keys.centroids != nullptr && keys.codes.c % 2 == 0 &&
                 keys.codes.groups * keys.codes.c == keys.phases->head_dim(),
             "rope-comm scores: groups of {} channels x {} must be whole RoPE pairs covering "
             "head dim {}",
             keys.codes.c, keys.codes.groups, keys.phases ? keys.phases->head_dim() : 0);
  CQKV_CHECK(t0 >= 0 && t0 + n <= keys.phases->max_pos(),
             "rope-comm scores: tokens [{}, {}) past the {} positions of the phase table", t0,
             t0 + n, keys.phases->max_pos());
  HWY_DYNAMIC_DISPATCH(RopeCommScoresImpl)(keys, q, heads, t0, n, scores);
}

void RopeCommScoresRef(const CqHeadView& codes, const float* centroids, const RopeParams& rope,
                       int head_dim, const float* q, int heads, int64_t t0, int64_t n,
                       float* scores) {
  std::vector<float> key(static_cast<size_t>(head_dim));
  const int64_t k = int64_t{1} << codes.bits;
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* stream;
    const int64_t base = CqTokenCodes(codes, 0, t0 + i, &stream);
    for (int gi = 0; gi < codes.groups; ++gi) {
      const uint32_t code = ReadCqCode(stream, base + gi, codes.bits);
      for (int j = 0; j < codes.c; ++j) {
        key[gi * codes.c + j] = centroids[(gi * k + code) * codes.c + j];
      }
    }
    ApplyRope(key.data(), 1, head_dim, t0 + i, rope);
    for (int h = 0; h < heads; ++h) {
      double s = 0;
      for (int j = 0; j < head_dim; ++j) {
        s += static_cast<double>(key[j]) * q[int64_t{h} * head_dim + j];
      }
      scores[h * n + i] = static_cast<float>(s);
    }
  }
}

}  // namespace cqkv
#endif  // HWY_ONCE
