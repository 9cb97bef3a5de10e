// Row sources of the dense decode-attention kernel (kernels/attn_dense.cc), per Highway target:
// where a token's key and value channels come from (fp32 or fp16 rows, or quantised rows decoded
// in registers), so one kernel template serves every dense and integer format.
// Interface: K(d, i, j) / V(d, i, j) give channels [j, j + lanes) of token i as fp32 lanes,
// KScalar / VScalar one channel (the head_dim % lanes tail), BeginBlock(b0, n) runs before each
// block of tokens, Prefetch(i, head_dim, ahead) hints token i's lines.

// Per-target include guard (Highway's -inl.h convention): included once per target.
#if defined(CQKV_KERNELS_ATTN_ROWS_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef CQKV_KERNELS_ATTN_ROWS_INL_H_
#undef CQKV_KERNELS_ATTN_ROWS_INL_H_
#else
#define CQKV_KERNELS_ATTN_ROWS_INL_H_
#endif

#include <cstdint>

#include <hwy/cache_control.h>
#include <hwy/highway.h>

#include "kernels/attn_dense.h"
#include "kernels/dequant.h"
#include "util/fp16.h"

HWY_BEFORE_NAMESPACE();
namespace cqkv {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

inline float RowF32(float x) { return x; }
inline float RowF32(uint16_t x) { return F16ToF32(x); }

template <class D>
HWY_INLINE hn::Vec<D> LoadRow(D d, const float* HWY_RESTRICT p) {
  return hn::LoadU(d, p);
}
template <class D>
HWY_INLINE hn::Vec<D> LoadRow(D d, const uint16_t* HWY_RESTRICT p) {
  const hn::Rebind<hwy::float16_t, D> dh;
  return hn::PromoteTo(d, hn::LoadU(dh, reinterpret_cast<const hwy::float16_t*>(p)));
}

// Dense rows of T (float, or IEEE half bits) `stride` elements apart.
template <typename T>
struct DenseRows {
  const T* HWY_RESTRICT k;
  const T* HWY_RESTRICT v;
  int64_t stride;
  template <class D>
  HWY_INLINE hn::Vec<D> K(D d, int64_t i, int j) const {
    return LoadRow(d, k + i * stride + j);
  }
  template <class D>
  HWY_INLINE hn::Vec<D> V(D d, int64_t i, int j) const {
    return LoadRow(d, v + i * stride + j);
  }
  float KScalar(int64_t i, int j) const { return RowF32(k[i * stride + j]); }
  float VScalar(int64_t i, int j) const { return RowF32(v[i * stride + j]); }
  void BeginBlock(int64_t, int64_t) {}
  // Rows are `stride` apart, so each token may be a fresh run of lines: fetch this token's value
  // row (used after the scores) and key row `ahead` (-1: none), a block ahead.
  HWY_INLINE void Prefetch(int64_t i, int hd, int64_t ahead) const {
    for (int j = 0; j < hd; j += static_cast<int>(64 / sizeof(T))) {
      hwy::Prefetch(v + i * stride + j);
      if (ahead >= 0) hwy::Prefetch(k + ahead * stride + j);
    }
  }
};

// Uniformly quantised rows (IntRowsView), decoded in registers: channel c of row i is
// min + code * scale, one fused multiply-add per vector. Lane l's code sits at bit (j + l) * bits
// of the row; bits divides 32, so a code never straddles the 32-bit words the row is loaded as,
// and one table lookup moves each lane's word in place before a per-lane shift. The (scale, min)
// pairs a block uses are widened to fp32 once (BeginBlock), not per vector.
template <class D>
HWY_INLINE hn::Vec<D> DecodeCodes(D d, const IntRowsView& r, int64_t i, int j) {
  const hn::RebindToUnsigned<D> du;
  const hn::RebindToSigned<D> di;
  const int64_t bit0 = int64_t{j} * r.bits;
  const uint8_t* HWY_RESTRICT p = r.codes + i * r.code_bytes + bit0 / 8;
  const auto words = hn::LoadU(du, reinterpret_cast<const uint32_t*>(p));
  const auto pos = hn::Add(hn::Mul(hn::Iota(du, 0), hn::Set(du, static_cast<uint32_t>(r.bits))),
                           hn::Set(du, static_cast<uint32_t>(bit0 % 8)));
  const auto w = hn::TableLookupLanes(words, hn::IndicesFromVec(du, hn::ShiftRight<5>(pos)));
  const auto code =
      hn::And(hn::Shr(w, hn::And(pos, hn::Set(du, 31u))), hn::Set(du, (1u << r.bits) - 1u));
  return hn::ConvertTo(d, hn::BitCast(di, code));
}

inline float DecodeCodeScalar(const IntRowsView& r, int64_t i, int j) {
  const int64_t bit = int64_t{j} * r.bits;
  return static_cast<float>((r.codes[i * r.code_bytes + bit / 8] >> (bit % 8)) &
                            ((1u << r.bits) - 1u));
}

// What both quantised layouts share: the K/V views, the block's widened (scale, min) parameters,
// and the row-source interface forwarded to Derived::Decode / DecodeScalar.
template <class Derived>
struct IntRowsBase {
  IntRowsView k, v;
  float* HWY_RESTRICT kp;  // widened parameters of the current block, K and V (Derived's layout)
  float* HWY_RESTRICT vp;

  const Derived& self() const { return static_cast<const Derived&>(*this); }
  template <class D>
  HWY_INLINE hn::Vec<D> K(D d, int64_t i, int j) const {
    return self().Decode(d, k, kp, i, j);
  }
  template <class D>
  HWY_INLINE hn::Vec<D> V(D d, int64_t i, int j) const {
    return self().Decode(d, v, vp, i, j);
  }
  float KScalar(int64_t i, int j) const { return self().DecodeScalar(k, kp, i, j); }
  float VScalar(int64_t i, int j) const { return self().DecodeScalar(v, vp, i, j); }
  void Prefetch(int64_t, int, int64_t) const {}  // contiguous rows: hardware prefetch follows
};

// Per-row groups of channels (int<B>-token): the block's pairs as stored, (rows, params_per_row).
struct IntTokenRows : IntRowsBase<IntTokenRows> {
  int64_t b0 = 0;  // first row of the current block

  void BeginBlock(int64_t block0, int64_t bn) {
    b0 = block0;
    DequantizeRow(DType::kF16, k.params + b0 * k.params_per_row, bn * k.params_per_row, kp);
    DequantizeRow(DType::kF16, v.params + b0 * v.params_per_row, bn * v.params_per_row, vp);
  }
  const float* Pair(const float* block, const IntRowsView& r, int64_t i, int j) const {
    return block + (i - b0) * r.params_per_row + 2 * (j / r.group);
  }
  template <class D>
  HWY_INLINE hn::Vec<D> Decode(D d, const IntRowsView& r, const float* block, int64_t i,
                               int j) const {
    const float* p = Pair(block, r, i, j);
    return hn::MulAdd(DecodeCodes(d, r, i, j), hn::Set(d, p[0]), hn::Set(d, p[1]));
  }
  float DecodeScalar(const IntRowsView& r, const float* block, int64_t i, int j) const {
    const float* p = Pair(block, r, i, j);
    return p[1] + DecodeCodeScalar(r, i, j) * p[0];
  }
};

// Per-channel pairs shared by token groups (int<B>-channel): for each token group the block
// touches, its scales then its mins as two fp32 rows of head_dim (de-interleaved).
struct IntChannelRows : IntRowsBase<IntChannelRows> {
  float* HWY_RESTRICT tmp;  // params_per_row floats
  int64_t g0 = 0;           // first token group of the current block

  void Widen(const IntRowsView& r, int64_t gn, float* HWY_RESTRICT out) {
    const int64_t hd = r.params_per_row / 2;
    for (int64_t g = 0; g < gn; ++g) {
      DequantizeRow(DType::kF16, r.params + (g0 + g) * r.params_per_row, r.params_per_row, tmp);
      float* o = out + g * 2 * hd;
      for (int64_t c = 0; c < hd; ++c) {
        o[c] = tmp[2 * c];
        o[hd + c] = tmp[2 * c + 1];
      }
    }
  }
  void BeginBlock(int64_t b0, int64_t bn) {
    g0 = b0 / k.token_group;
    const int64_t gn = (b0 + bn - 1) / k.token_group - g0 + 1;
    Widen(k, gn, kp);
    Widen(v, gn, vp);
  }
  const float* Scales(const float* block, const IntRowsView& r, int64_t i) const {
    return block + (i / r.token_group - g0) * r.params_per_row;
  }
  template <class D>
  HWY_INLINE hn::Vec<D> Decode(D d, const IntRowsView& r, const float* block, int64_t i,
                               int j) const {
    const float* sc = Scales(block, r, i);
    return hn::MulAdd(DecodeCodes(d, r, i, j), hn::LoadU(d, sc + j),
                      hn::LoadU(d, sc + r.params_per_row / 2 + j));
  }
  float DecodeScalar(const IntRowsView& r, const float* block, int64_t i, int j) const {
    const float* sc = Scales(block, r, i);
    return sc[r.params_per_row / 2 + j] + DecodeCodeScalar(r, i, j) * sc[j];
  }
};

}  // namespace HWY_NAMESPACE
}  // namespace cqkv
HWY_AFTER_NAMESPACE();

#endif  // CQKV_KERNELS_ATTN_ROWS_INL_H_
