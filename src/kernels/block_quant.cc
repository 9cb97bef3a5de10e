// Vector row kernels for the block formats of block_formats.h (K-quants and the 32-element
// fallbacks). Each format is written once as a "visitor" that walks a block's sub-blocks and
// yields, per group of N lanes, the integer quants as floats plus the sub-block's scale and
// offset; one sink turns that into a dot product with x (decode: the weights never leave
// registers), another into widened fp32 (prefill's block widening).
#include <cmath>
#include <cstring>

#include "kernels/block_formats.h"
#include "util/error.h"
#include "util/fp16.h"

// Same target set as dequant.cc: AVX2 and AVX-512 vector code, plus the scalar fallback.
#ifndef HWY_DISABLED_TARGETS
#define HWY_DISABLED_TARGETS (HWY_SSSE3 | HWY_SSE4 | HWY_AVX3_DL)
#endif

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/block_quant.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#ifndef CQKV_KERNELS_BLOCK_QUANT_HELPERS_
#define CQKV_KERNELS_BLOCK_QUANT_HELPERS_
namespace cqkv::block_formats {
namespace {

inline float Half(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return F16ToF32(h);
}

inline uint32_t U32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// IQ4_NL's table as floats, for gathers.
alignas(64) constexpr float kIq4nlFloat[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                               1,    13,   25,  38,  53,  69,  89,  113};

}  // namespace
}  // namespace cqkv::block_formats
#endif  // CQKV_KERNELS_BLOCK_QUANT_HELPERS_

HWY_BEFORE_NAMESPACE();
namespace cqkv::block_formats {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
namespace {

using DF = hn::ScalableTag<float>;
using DI = hn::Rebind<int32_t, DF>;
using DU = hn::Rebind<uint32_t, DF>;
using VF = hn::Vec<DF>;
using VI = hn::Vec<DI>;

// N bytes widened to N int32 lanes.
HWY_INLINE VI LoadBytes(const uint8_t* p) {
  const hn::Rebind<uint8_t, DF> du8;
  return hn::PromoteTo(DI(), hn::LoadU(du8, p));
}

HWY_INLINE VF ToF(VI v) { return hn::ConvertTo(DF(), v); }

// Dot-product sink: per sub-block, the unscaled sum of q x (a short FMA chain, independent across
// sub-blocks) is scaled once into `acc`; the offset term `off * sum(x)` goes to `acc_off`.
struct DotSink {
  const float* x;
  VF acc = hn::Zero(DF());
  VF acc_off = hn::Zero(DF());

  // Elements [e, e + len) with quants q(j) for lanes e + j .. e + j + N - 1, value scale q + off.
  template <bool kOffset, class QFn>
  HWY_INLINE void Sub(int64_t e, int64_t len, float scale, float off, const QFn& q) {
    const DF d;
    const int64_t N = static_cast<int64_t>(hn::Lanes(d));
    VF xv = hn::LoadU(d, x + e);
    VF qx = hn::Mul(q(0), xv);
    VF xs = xv;
    for (int64_t j = N; j < len; j += N) {
      xv = hn::LoadU(d, x + e + j);
      qx = hn::MulAdd(q(j), xv, qx);
      if constexpr (kOffset) xs = hn::Add(xs, xv);
    }
    acc = hn::MulAdd(qx, hn::Set(d, scale), acc);
    if constexpr (kOffset) acc_off = hn::MulAdd(xs, hn::Set(d, off), acc_off);
  }

  float Total() const {
    const DF d;
    return hn::GetLane(hn::SumOfLanes(d, hn::Add(acc, acc_off)));
  }
};

// Widening sink: value = scale q (+ off) rounded once, as the scalar reference computes it
// (scale q is exact in fp32, so a fused multiply-add gives the correctly rounded value).
struct DequantSink {
  float* out;

  template <bool kOffset, class QFn>
  HWY_INLINE void Sub(int64_t e, int64_t len, float scale, float off, const QFn& q) {
    const DF d;
    const int64_t N = static_cast<int64_t>(hn::Lanes(d));
    const VF s = hn::Set(d, scale), o = hn::Set(d, off);
    for (int64_t j = 0; j < len; j += N) {
      if constexpr (!kOffset) {
        hn::StoreU(hn::Mul(q(j), s), d, out + e + j);
      } else {
#if HWY_TARGET == HWY_SCALAR
        // The scalar target's MulAdd may round twice; std::fma never does.
        out[e + j] = std::fma(scale, hn::GetLane(q(j)), off);
        (void)s;
        (void)o;
#else
        hn::StoreU(hn::MulAdd(q(j), s, o), d, out + e + j);
#endif
      }
    }
  }
};

// ---- 32-element blocks. Nibble j of a block: low nibble of byte j for j < 16, else high
// nibble of byte j - 16; `j` below is a multiple of N, so a lane group never straddles the two.
HWY_INLINE VI Nibbles32(const uint8_t* qs, int64_t j) {
  return j < 16 ? hn::And(LoadBytes(qs + j), hn::Set(DI(), 15))
                : hn::ShiftRight<4>(LoadBytes(qs + j - 16));
}

// Bit 4 of element j.. from the block's 32-bit high-bit word.
HWY_INLINE VI HighBits32(uint32_t qh, int64_t j) {
  const DU du;
  const auto bits =
      hn::And(hn::Set(du, qh) >> hn::Iota(du, static_cast<uint32_t>(j)), hn::Set(du, 1u));
  return hn::ShiftLeft<4>(hn::BitCast(DI(), bits));
}

template <class Sink>
HWY_INLINE void VisitQ4_1(const uint8_t* b, int64_t e, Sink& s) {
  s.template Sub<true>(e, 32, Half(b), Half(b + 2),
                       [b](int64_t j) HWY_ATTR { return ToF(Nibbles32(b + 4, j)); });
}

template <class Sink>
HWY_INLINE void VisitQ5_0(const uint8_t* b, int64_t e, Sink& s) {
  const uint32_t qh = U32(b + 2);
  s.template Sub<false>(e, 32, Half(b), 0.0f, [b, qh](int64_t j) HWY_ATTR {
    return ToF(hn::Sub(hn::Or(Nibbles32(b + 6, j), HighBits32(qh, j)), hn::Set(DI(), 16)));
  });
}

template <class Sink>
HWY_INLINE void VisitQ5_1(const uint8_t* b, int64_t e, Sink& s) {
  const uint32_t qh = U32(b + 4);
  s.template Sub<true>(e, 32, Half(b), Half(b + 2), [b, qh](int64_t j) HWY_ATTR {
    return ToF(hn::Or(Nibbles32(b + 8, j), HighBits32(qh, j)));
  });
}

// IQ4_NL's levels for 4-bit indices: in-register permutes where a vector holds 8 or 16 floats
// (a gather is several times slower), a gather elsewhere.
HWY_INLINE VF Iq4nlLevels(VI idx) {
  const DF d;
  constexpr size_t kMax = hn::MaxLanes(DF());
  if constexpr (kMax == 16) {
    return hn::TableLookupLanes(hn::Load(d, kIq4nlFloat), hn::IndicesFromVec(d, idx));
  } else if constexpr (kMax == 8) {
    const DI di;
    const auto low3 = hn::IndicesFromVec(d, hn::And(idx, hn::Set(di, 7)));
    const VF lo = hn::TableLookupLanes(hn::Load(d, kIq4nlFloat), low3);
    const VF hi = hn::TableLookupLanes(hn::Load(d, kIq4nlFloat + 8), low3);
    return hn::IfThenElse(hn::RebindMask(d, hn::Gt(idx, hn::Set(di, 7))), hi, lo);
  } else {
    return hn::GatherIndex(d, kIq4nlFloat, idx);
  }
}

template <class Sink>
HWY_INLINE void VisitIQ4_NL(const uint8_t* b, int64_t e, Sink& s) {
  s.template Sub<false>(e, 32, Half(b), 0.0f,
                        [b](int64_t j) HWY_ATTR { return Iq4nlLevels(Nibbles32(b + 2, j)); });
}

// ---- 256-element super-blocks.

// Q2_K / Q3_K low bits: bits 2s..2s+1 of quant bytes l.. (s = shift / 2).
HWY_INLINE VI TwoBits(const uint8_t* q, int shift) {
  return hn::And(hn::ShiftRightSame(LoadBytes(q), shift), hn::Set(DI(), 3));
}

template <class Sink>
HWY_INLINE void VisitQ2_K(const uint8_t* b, int64_t e, Sink& s) {
  const float d = Half(b + 80), dmin = Half(b + 82);
  for (int h = 0; h < 2; ++h) {
    const uint8_t* q = b + 16 + 32 * h;
    for (int sh = 0; sh < 4; ++sh) {
      for (int part = 0; part < 2; ++part) {  // elements l = 0..15, then 16..31
        const int k = 8 * h + 2 * sh + part;
        const uint8_t* qp = q + 16 * part;
        s.template Sub<true>(e + 128 * h + 32 * sh + 16 * part, 16,
                             d * static_cast<float>(b[k] & 15),
                             -(dmin * static_cast<float>(b[k] >> 4)),
                             [qp, sh](int64_t j) HWY_ATTR { return ToF(TwoBits(qp + j, 2 * sh)); });
      }
    }
  }
}

template <class Sink>
HWY_INLINE void VisitQ3_K(const uint8_t* b, int64_t e, Sink& s) {
  const float d = Half(b + 108);
  for (int h = 0; h < 2; ++h) {
    const uint8_t* q = b + 32 + 32 * h;
    for (int sh = 0; sh < 4; ++sh) {
      const int bit = 4 * h + sh;
      for (int part = 0; part < 2; ++part) {
        const int k = 8 * h + 2 * sh + part;
        const uint8_t* qp = q + 16 * part;
        const uint8_t* mp = b + 16 * part;
        s.template Sub<false>(
            e + 128 * h + 32 * sh + 16 * part, 16, d * static_cast<float>(Q3KScale(b + 96, k)),
            0.0f, [qp, mp, sh, bit](int64_t j) HWY_ATTR {
              const DI di;
              // q = low + 4 * high bit - 4.
              const VI high = hn::And(hn::ShiftRightSame(LoadBytes(mp + j), bit), hn::Set(di, 1));
              return ToF(hn::Sub(hn::Add(TwoBits(qp + j, 2 * sh), hn::ShiftLeft<2>(high)),
                                 hn::Set(di, 4)));
            });
      }
    }
  }
}

// One 32-element sub-block k of Q4_K / Q5_K: nibble kHigh of its 32 quant bytes (plus bit k of
// the high-bit bytes for Q5_K). kHigh is a template argument so the inner loop has no branch.
template <bool kFifth, bool kHigh, class Sink>
HWY_INLINE void SubQ45_K(const uint8_t* b, int64_t e, int k, float d, float dmin, Sink& s) {
  int sc, m;
  Q4KScaleMin(b + 4, k, sc, m);
  const uint8_t* qp = b + (kFifth ? 48 : 16) + 32 * (k / 2);
  const uint8_t* qh = b + 16;
  s.template Sub<true>(e + 32 * k, 32, d * static_cast<float>(sc), -(dmin * static_cast<float>(m)),
                       [=](int64_t j) HWY_ATTR {  // qh, k: Q5_K only
                         const DI di;
                         const VI bytes = LoadBytes(qp + j);
                         VI q = kHigh ? hn::ShiftRight<4>(bytes) : hn::And(bytes, hn::Set(di, 15));
                         if constexpr (kFifth) {
                           const VI hb =
                               hn::And(hn::ShiftRightSame(LoadBytes(qh + j), k), hn::Set(di, 1));
                           q = hn::Or(q, hn::ShiftLeft<4>(hb));
                         }
                         return ToF(q);
                       });
}

// Q4_K and Q5_K share scales and nibble order; kFifth adds Q5_K's high bits.
template <bool kFifth, class Sink>
HWY_INLINE void VisitQ45_K(const uint8_t* b, int64_t e, Sink& s) {
  const float d = Half(b), dmin = Half(b + 2);
  for (int k = 0; k < 8; k += 2) {
    SubQ45_K<kFifth, false>(b, e, k, d, dmin, s);
    SubQ45_K<kFifth, true>(b, e, k + 1, d, dmin, s);
  }
}

template <class Sink>
HWY_INLINE void VisitQ6_K(const uint8_t* b, int64_t e, Sink& s) {
  const float d = Half(b + 208);
  for (int h = 0; h < 2; ++h) {
    for (int sh = 0; sh < 4; ++sh) {
      const uint8_t* lp = b + 64 * h + 32 * (sh % 2);
      const uint8_t* hp = b + 128 + 32 * h;
      const bool high_nibble = sh >= 2;
      for (int part = 0; part < 2; ++part) {
        const int k = 8 * h + 2 * sh + part;
        const int off = 16 * part;
        s.template Sub<false>(
            e + 128 * h + 32 * sh + off, 16,
            d * static_cast<float>(static_cast<int8_t>(b[192 + k])), 0.0f,
            [lp, hp, off, sh, high_nibble](int64_t j) HWY_ATTR {
              const DI di;
              const VI lb = LoadBytes(lp + off + j);
              const VI low = high_nibble ? hn::ShiftRight<4>(lb) : hn::And(lb, hn::Set(di, 15));
              const VI high =
                  hn::And(hn::ShiftRightSame(LoadBytes(hp + off + j), 2 * sh), hn::Set(di, 3));
              return ToF(hn::Sub(hn::Or(low, hn::ShiftLeft<4>(high)), hn::Set(di, 32)));
            });
      }
    }
  }
}

// Blocks of `bytes` bytes and `bs` elements, each handed to `visit` (a Visit* above).
template <class Sink, class Visit>
HWY_INLINE void ForBlocks(const uint8_t* row, int64_t n, int64_t bs, int64_t bytes, Sink& s,
                          const Visit& visit) {
  for (int64_t blk = 0; blk < n / bs; ++blk) visit(row + blk * bytes, blk * bs, s);
}

template <class Sink>
void VisitRow(DType t, const uint8_t* row, int64_t n, Sink& s) {
  const int64_t bs = DTypeBlockSize(t), bytes = DTypeBlockBytes(t);
  // One switch per row; the block loop is specialised per format.
  switch (t) {
    case DType::kQ4_1:
      return ForBlocks(row, n, bs, bytes, s, VisitQ4_1<Sink>);
    case DType::kQ5_0:
      return ForBlocks(row, n, bs, bytes, s, VisitQ5_0<Sink>);
    case DType::kQ5_1:
      return ForBlocks(row, n, bs, bytes, s, VisitQ5_1<Sink>);
    case DType::kIQ4_NL:
      return ForBlocks(row, n, bs, bytes, s, VisitIQ4_NL<Sink>);
    case DType::kQ2_K:
      return ForBlocks(row, n, bs, bytes, s, VisitQ2_K<Sink>);
    case DType::kQ3_K:
      return ForBlocks(row, n, bs, bytes, s, VisitQ3_K<Sink>);
    case DType::kQ4_K:
      return ForBlocks(row, n, bs, bytes, s, VisitQ45_K<false, Sink>);
    case DType::kQ5_K:
      return ForBlocks(row, n, bs, bytes, s, VisitQ45_K<true, Sink>);
    case DType::kQ6_K:
      return ForBlocks(row, n, bs, bytes, s, VisitQ6_K<Sink>);
    default:
      return;  // unreachable: the exported wrappers check the type
  }
}

}  // namespace

float DotRowImpl(DType t, const uint8_t* row, const float* x, int64_t n) {
  DotSink s{x};
  VisitRow(t, row, n, s);
  return s.Total();
}

void DequantizeRowImpl(DType t, const uint8_t* row, int64_t n, float* out) {
  DequantSink s{out};
  VisitRow(t, row, n, s);
}

}  // namespace HWY_NAMESPACE
}  // namespace cqkv::block_formats
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace cqkv::block_formats {

HWY_EXPORT(DotRowImpl);
HWY_EXPORT(DequantizeRowImpl);

void DequantizeRow(DType t, const uint8_t* row, int64_t n, float* out) {
  CQKV_CHECK(IsBlockFormat(t), "DequantizeRow: {} is not a block format", DTypeName(t));
  HWY_DYNAMIC_DISPATCH(DequantizeRowImpl)(t, row, n, out);
}

float DotRow(DType t, const uint8_t* row, const float* x, int64_t n) {
  CQKV_CHECK(IsBlockFormat(t), "DotRow: {} is not a block format", DTypeName(t));
  return HWY_DYNAMIC_DISPATCH(DotRowImpl)(t, row, x, n);
}

}  // namespace cqkv::block_formats
#endif  // HWY_ONCE
