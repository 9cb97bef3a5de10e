// Highway per-target implementations of kernels/attn_dense.h. Tokens are processed in blocks of
// kBlock: scores of every head for the block first (each key row is read once for all the heads
// that share it, GQA), one softmax update per block, then the values with each head's output
// chunk held in registers while the block's value rows stream from L1. One template serves
// fp32, fp16 and uniformly quantised rows (decoded in registers); only the row source differs.
#include <algorithm>
#include <cmath>
#include <vector>

#ifndef HWY_DISABLED_TARGETS
#define HWY_DISABLED_TARGETS (HWY_SSSE3 | HWY_SSE4 | HWY_AVX3_DL)
#endif

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/attn_dense.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
// Must come after foreach_target.h.
#include <hwy/highway.h>
// Per-target code after highway.h.
#include <hwy/contrib/math/math-inl.h>

#include "kernels/attn_rows-inl.h"

#include "kernels/attn_dense.h"
#include "util/error.h"
#include "util/fp16.h"

#ifndef CQKV_KERNELS_ATTN_DENSE_HELPERS_
#define CQKV_KERNELS_ATTN_DENSE_HELPERS_
namespace cqkv {
namespace {
constexpr int64_t kBlock = 64;    // tokens per softmax update; the block's V rows stay in L1
constexpr int kHeadsPerPass = 4;  // query heads whose dot accumulators live in registers at once
constexpr int64_t kMaxIntParamsPerRow = 64;  // IntRowsView: 32 groups (head_dim 512 / 16)
inline float ToF32(float x) { return x; }
inline float ToF32(uint16_t x) { return F16ToF32(x); }
}  // namespace
}  // namespace cqkv
#endif

HWY_BEFORE_NAMESPACE();
namespace cqkv {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// BlockMax: per head, two vector accumulators over the row (a scalar max is a latency chain as
// long as the row).
void BlockMaxImpl(const float* HWY_RESTRICT scores, int heads, int64_t n, int64_t stride,
                  float* HWY_RESTRICT out) {
  const hn::ScalableTag<float> d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  for (int h = 0; h < heads; ++h) {
    const float* row = scores + h * stride;
    auto m0 = hn::Set(d, -INFINITY), m1 = m0;
    int64_t i = 0;
    for (; i + 2 * N <= n; i += 2 * N) {
      m0 = hn::Max(m0, hn::LoadU(d, row + i));
      m1 = hn::Max(m1, hn::LoadU(d, row + i + N));
    }
    if (i + N <= n) {
      m0 = hn::Max(m0, hn::LoadU(d, row + i));
      i += N;
    }
    float m = hn::GetLane(hn::MaxOfLanes(d, hn::Max(m0, m1)));
    for (; i < n; ++i) m = std::max(m, row[i]);
    out[h] = m;
  }
}

// SoftmaxBlockStrided: vector max, the state's rescale when a head's max rises, then exp and
// the row sum a vector at a time.
void SoftmaxBlockImpl(const AttnState& s, float* HWY_RESTRICT scores, int64_t n, int64_t stride,
                      float* block_sums) {
  const hn::ScalableTag<float> d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  HWY_ALIGN float bm[1];
  for (int h = 0; h < s.heads; ++h) {
    float* row = scores + h * stride;
    BlockMaxImpl(row, 1, n, stride, bm);
    if (bm[0] > s.m[h]) {
      const float f = std::exp(s.m[h] - bm[0]);  // 0 when the state was empty
      s.l[h] *= f;
      float* a = s.acc + int64_t{h} * s.head_dim;
      for (int j = 0; j < s.head_dim; ++j) a[j] *= f;
      s.m[h] = bm[0];
    }
    const auto vm = hn::Set(d, s.m[h]);
    auto v0 = hn::Zero(d);
    int64_t i = 0;
    for (; i + N <= n; i += N) {
      const auto e = hn::Exp(d, hn::Sub(hn::LoadU(d, row + i), vm));
      hn::StoreU(e, d, row + i);
      v0 = hn::Add(v0, e);
    }
    float sum = hn::GetLane(hn::SumOfLanes(d, v0));
    for (; i < n; ++i) {
      row[i] = std::exp(row[i] - s.m[h]);
      sum += row[i];
    }
    s.l[h] += sum;
    if (block_sums != nullptr) block_sums[h] = sum;
  }
}

template <class Rows>
void DenseAttendImpl(const float* HWY_RESTRICT q, Rows& rows, int64_t n, const AttnState& s) {
  const hn::ScalableTag<float> d;
  const int N = static_cast<int>(hn::Lanes(d));
  const int hd = s.head_dim, G = s.heads;
  const int hd_vec = hd / N * N;
  HWY_ALIGN float scores[8 * kBlock];  // (heads, kBlock); larger groups take several passes
  for (int g0 = 0; g0 < G; g0 += 8) {
    const int gn = std::min(8, G - g0);
    const AttnState sub{s.m + g0, s.l + g0, s.acc + int64_t{g0} * hd, gn, hd};
    const float* qg = q + int64_t{g0} * hd;
    for (int64_t b0 = 0; b0 < n; b0 += kBlock) {
      const int64_t bn = std::min(kBlock, n - b0);
      rows.BeginBlock(b0, bn);
      // Scores: each key row is loaded once per pass of up to kHeadsPerPass heads.
      for (int h0 = 0; h0 < gn; h0 += kHeadsPerPass) {
        const int hn_ = std::min(kHeadsPerPass, gn - h0);
        for (int64_t i = 0; i < bn; ++i) {
          const int64_t t = b0 + i;
          if (h0 == 0) rows.Prefetch(t, hd, t + kBlock < n ? t + kBlock : -1);
          auto a0 = hn::Zero(d), a1 = hn::Zero(d), a2 = hn::Zero(d), a3 = hn::Zero(d);
          const float* q0 = qg + int64_t{h0} * hd;
          for (int j = 0; j < hd_vec; j += N) {
            const auto kv = rows.K(d, t, j);
            a0 = hn::MulAdd(kv, hn::LoadU(d, q0 + j), a0);
            if (hn_ > 1) a1 = hn::MulAdd(kv, hn::LoadU(d, q0 + hd + j), a1);
            if (hn_ > 2) a2 = hn::MulAdd(kv, hn::LoadU(d, q0 + 2 * hd + j), a2);
            if (hn_ > 3) a3 = hn::MulAdd(kv, hn::LoadU(d, q0 + 3 * hd + j), a3);
          }
          const hn::Vec<decltype(d)> accs[4] = {a0, a1, a2, a3};
          for (int h = 0; h < hn_; ++h) {
            float sum = hn::GetLane(hn::SumOfLanes(d, accs[h]));
            for (int j = hd_vec; j < hd; ++j) sum += rows.KScalar(t, j) * q0[int64_t{h} * hd + j];
            scores[(h0 + h) * kBlock + i] = sum;
          }
        }
      }
      SoftmaxBlockImpl(sub, scores, bn, kBlock, nullptr);
      // Values: per chunk of N channels, the heads' outputs stay in registers over the block.
      for (int h0 = 0; h0 < gn; h0 += kHeadsPerPass) {
        const int hn_ = std::min(kHeadsPerPass, gn - h0);
        const float* p0 = scores + h0 * kBlock;
        float* o0 = sub.acc + int64_t{h0} * hd;
        for (int j = 0; j < hd_vec; j += N) {
          auto a0 = hn::LoadU(d, o0 + j);
          auto a1 = hn_ > 1 ? hn::LoadU(d, o0 + hd + j) : hn::Zero(d);
          auto a2 = hn_ > 2 ? hn::LoadU(d, o0 + 2 * hd + j) : hn::Zero(d);
          auto a3 = hn_ > 3 ? hn::LoadU(d, o0 + 3 * hd + j) : hn::Zero(d);
          for (int64_t i = 0; i < bn; ++i) {
            const auto vv = rows.V(d, b0 + i, j);
            a0 = hn::MulAdd(hn::Set(d, p0[i]), vv, a0);
            if (hn_ > 1) a1 = hn::MulAdd(hn::Set(d, p0[kBlock + i]), vv, a1);
            if (hn_ > 2) a2 = hn::MulAdd(hn::Set(d, p0[2 * kBlock + i]), vv, a2);
            if (hn_ > 3) a3 = hn::MulAdd(hn::Set(d, p0[3 * kBlock + i]), vv, a3);
          }
          hn::StoreU(a0, d, o0 + j);
          if (hn_ > 1) hn::StoreU(a1, d, o0 + hd + j);
          if (hn_ > 2) hn::StoreU(a2, d, o0 + 2 * hd + j);
          if (hn_ > 3) hn::StoreU(a3, d, o0 + 3 * hd + j);
        }
        for (int h = 0; h < hn_; ++h) {
          for (int j = hd_vec; j < hd; ++j) {
            float a = o0[int64_t{h} * hd + j];
            for (int64_t i = 0; i < bn; ++i) a += p0[h * kBlock + i] * rows.VScalar(b0 + i, j);
            o0[int64_t{h} * hd + j] = a;
          }
        }
      }
    }
  }
}

void DenseAttendF32Impl(const float* q, const float* k, const float* v, int64_t stride, int64_t n,
                        const AttnState& s) {
  DenseRows<float> rows{k, v, stride};
  DenseAttendImpl(q, rows, n, s);
}
void DenseAttendF16Impl(const float* q, const uint16_t* k, const uint16_t* v, int64_t stride,
                        int64_t n, const AttnState& s) {
  DenseRows<uint16_t> rows{k, v, stride};
  DenseAttendImpl(q, rows, n, s);
}
void IntAttendImpl(const float* q, const IntRowsView& k, const IntRowsView& v, int64_t n,
                   const AttnState& s) {
  // A block's parameters (sizes checked by IntAttend): token layout, kBlock rows of at most
  // kMaxIntParamsPerRow; channel layout, at most 4 token groups (>= 32 rows each) of 2 x 512.
  constexpr int64_t kFloats = kBlock * kMaxIntParamsPerRow;
  static_assert(kFloats >= 4 * 2 * 512, "channel-layout parameters of a block must fit");
  HWY_ALIGN float kp[kFloats], vp[kFloats];
  if (k.token_group > 0) {
    HWY_ALIGN float tmp[2 * 512];
    IntChannelRows rows{{k, v, kp, vp}, tmp};
    DenseAttendImpl(q, rows, n, s);
  } else {
    IntTokenRows rows{{k, v, kp, vp}};
    DenseAttendImpl(q, rows, n, s);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace cqkv
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace cqkv {

HWY_EXPORT(DenseAttendF32Impl);
HWY_EXPORT(DenseAttendF16Impl);
HWY_EXPORT(IntAttendImpl);
HWY_EXPORT(BlockMaxImpl);
HWY_EXPORT(SoftmaxBlockImpl);

bool IntAttendSupports(const IntRowsView& r) {
  const bool layout = r.token_group > 0
                          ? r.token_group >= 32 && r.params_per_row <= 2 * 512
                          : r.group % 16 == 0 && r.params_per_row <= kMaxIntParamsPerRow;
  return layout && r.bits >= 1 && 32 % r.bits == 0;
}

void IntAttend(const float* q, const IntRowsView& k, const IntRowsView& v, int64_t n,
               const AttnState& s) {
  CQKV_CHECK(IntAttendSupports(k) && IntAttendSupports(v) && k.token_group == v.token_group,
             "IntAttend: unsupported rows (groups {}/{}, token groups {}/{}, bits {}/{})", k.group,
             v.group, k.token_group, v.token_group, k.bits, v.bits);
  HWY_DYNAMIC_DISPATCH(IntAttendImpl)(q, k, v, n, s);
}

void DenseAttendF32(const float* q, const float* k, const float* v, int64_t stride, int64_t n,
                    const AttnState& s) {
  HWY_DYNAMIC_DISPATCH(DenseAttendF32Impl)(q, k, v, stride, n, s);
}
void DenseAttendF16(const float* q, const uint16_t* k, const uint16_t* v, int64_t stride, int64_t n,
                    const AttnState& s) {
  HWY_DYNAMIC_DISPATCH(DenseAttendF16Impl)(q, k, v, stride, n, s);
}

void ResetAttnState(const AttnState& s) {
  std::fill(s.m, s.m + s.heads, -INFINITY);
  std::fill(s.l, s.l + s.heads, 0.0f);
  std::fill(s.acc, s.acc + int64_t{s.heads} * s.head_dim, 0.0f);
}

void MergeAttnState(const AttnState& dst, const AttnState& src) {
  for (int h = 0; h < dst.heads; ++h) {
    if (src.m[h] == -INFINITY) continue;  // empty source: nothing to add
    const float m = std::max(dst.m[h], src.m[h]);
    const float fd = std::exp(dst.m[h] - m), fs = std::exp(src.m[h] - m);
    dst.l[h] = dst.l[h] * fd + src.l[h] * fs;
    float* a = dst.acc + int64_t{h} * dst.head_dim;
    const float* b = src.acc + int64_t{h} * dst.head_dim;
    for (int j = 0; j < dst.head_dim; ++j) a[j] = a[j] * fd + b[j] * fs;
    dst.m[h] = m;
  }
}

void SoftmaxBlock(const AttnState& s, float* scores, int64_t n) {
  HWY_DYNAMIC_DISPATCH(SoftmaxBlockImpl)(s, scores, n, n, nullptr);
}

void SoftmaxBlockStrided(const AttnState& s, float* scores, int64_t n, int64_t stride,
                         float* block_sums) {
  HWY_DYNAMIC_DISPATCH(SoftmaxBlockImpl)(s, scores, n, stride, block_sums);
}

void BlockMax(const float* scores, int heads, int64_t n, int64_t stride, float* out) {
  HWY_DYNAMIC_DISPATCH(BlockMaxImpl)(scores, heads, n, stride, out);
}

void SoftmaxBlockRef(const AttnState& s, float* scores, int64_t n) {
  for (int h = 0; h < s.heads; ++h) {
    float* row = scores + h * n;
    float bm = -INFINITY;
    for (int64_t i = 0; i < n; ++i) bm = std::max(bm, row[i]);
    if (bm > s.m[h]) {
      const float f = std::exp(s.m[h] - bm);
      s.l[h] *= f;
      float* a = s.acc + int64_t{h} * s.head_dim;
      for (int j = 0; j < s.head_dim; ++j) a[j] *= f;
      s.m[h] = bm;
    }
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) {
      row[i] = std::exp(row[i] - s.m[h]);
      sum += row[i];
    }
    s.l[h] += static_cast<float>(sum);
  }
}

namespace {
template <typename T>
void DenseRef(const float* q, const T* k, const T* v, int64_t stride, int64_t n,
              const AttnState& s) {
  const int hd = s.head_dim;
  std::vector<float> sc(static_cast<size_t>(s.heads));
  for (int64_t i = 0; i < n; ++i) {
    for (int h = 0; h < s.heads; ++h) {
      double dot = 0;
      for (int j = 0; j < hd; ++j) dot += double(q[int64_t{h} * hd + j]) * ToF32(k[i * stride + j]);
      sc[h] = static_cast<float>(dot);
    }
    SoftmaxBlockRef(AttnState{s.m, s.l, s.acc, s.heads, hd}, sc.data(), 1);
    for (int h = 0; h < s.heads; ++h) {
      for (int j = 0; j < hd; ++j) s.acc[int64_t{h} * hd + j] += sc[h] * ToF32(v[i * stride + j]);
    }
  }
}
}  // namespace

void DenseAttendF32Ref(const float* q, const float* k, const float* v, int64_t stride, int64_t n,
                       const AttnState& s) {
  DenseRef(q, k, v, stride, n, s);
}
void DenseAttendF16Ref(const float* q, const uint16_t* k, const uint16_t* v, int64_t stride,
                       int64_t n, const AttnState& s) {
  DenseRef(q, k, v, stride, n, s);
}

}  // namespace cqkv
#endif  // HWY_ONCE
