#include "kernels/dequant.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>

#include "kernels/block_formats.h"
#include "util/error.h"
#include "util/fp16.h"

// Only AVX2 and AVX-512 are worth their compile time here; SSE-class CPUs use the fallback.
#ifndef HWY_DISABLED_TARGETS
#define HWY_DISABLED_TARGETS (HWY_SSSE3 | HWY_SSE4 | HWY_AVX3_DL)
#endif

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/dequant.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

// foreach_target.h re-includes this file once per target; target-independent helpers once only.
#ifndef CQKV_KERNELS_DEQUANT_HELPERS_
#define CQKV_KERNELS_DEQUANT_HELPERS_
namespace cqkv {
namespace {

constexpr int64_t kQK = 32;           // elements per Q8_0 / Q4_0 block
constexpr int64_t kQ8Bytes = 2 + 32;  // fp16 d + int8[32]
constexpr int64_t kQ4Bytes = 2 + 16;  // fp16 d + nibbles[16]

inline uint16_t LoadU16(const void* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// Scalar widening for the tails of the vector loops (and the reference).
inline float ScalarF(const float* p) { return *p; }
inline float ScalarF(const hwy::float16_t* p) { return F16ToF32(LoadU16(p)); }
inline float ScalarF(const hwy::bfloat16_t* p) { return BF16ToF32(LoadU16(p)); }

}  // namespace
}  // namespace cqkv
#endif  // CQKV_KERNELS_DEQUANT_HELPERS_

HWY_BEFORE_NAMESPACE();
namespace cqkv {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
// Internal linkage: other kernel files instantiate their own per-target helpers.
namespace {

// Widening loads of N consecutive stored elements. The scalar target's own f16 conversion
// gets inf/nan wrong, so it uses the project's reference conversion instead.
template <class D>
HWY_INLINE hn::Vec<D> LoadF(D d, const float* p) {
  return hn::LoadU(d, p);
}
template <class D>
HWY_INLINE hn::Vec<D> LoadF(D d, const hwy::float16_t* p) {
#if HWY_TARGET == HWY_SCALAR
  return hn::Set(d, ScalarF(p));
#else
  const hn::Rebind<hwy::float16_t, D> dh;
  return hn::PromoteTo(d, hn::LoadU(dh, p));
#endif
}
template <class D>
HWY_INLINE hn::Vec<D> LoadF(D d, const hwy::bfloat16_t* p) {
  const hn::Rebind<hwy::bfloat16_t, D> db;
  return hn::PromoteTo(d, hn::LoadU(db, p));
}

// Broadcast of a block's fp16 scale, converted by the F16C unit where the target has one.
template <class D>
HWY_INLINE hn::Vec<D> BroadcastScale(D d, const uint8_t* p) {
#if HWY_TARGET == HWY_SCALAR
  return hn::Set(d, F16ToF32(LoadU16(p)));
#else
  const hn::Rebind<uint16_t, D> du16;
  const hn::Rebind<hwy::float16_t, D> dh;
  return hn::PromoteTo(d, hn::BitCast(dh, hn::Set(du16, LoadU16(p))));
#endif
}

// N int8 -> N floats.
template <class D>
HWY_INLINE hn::Vec<D> LoadI8(D d, const uint8_t* p) {
  const hn::Rebind<int8_t, D> d8;
  const hn::Rebind<int32_t, D> di;
  return hn::ConvertTo(d, hn::PromoteTo(di, hn::LoadU(d8, reinterpret_cast<const int8_t*>(p))));
}

// N packed bytes -> (low nibbles - 8, high nibbles - 8) as floats.
template <class D>
HWY_INLINE void LoadNibbles(D d, const uint8_t* p, hn::Vec<D>& lo, hn::Vec<D>& hi) {
  const hn::Rebind<uint8_t, D> du8;
  const hn::Rebind<int32_t, D> di;
  const auto q = hn::PromoteTo(di, hn::LoadU(du8, p));
  const auto eight = hn::Set(di, 8);
  lo = hn::ConvertTo(d, hn::Sub(hn::And(q, hn::Set(di, 15)), eight));
  hi = hn::ConvertTo(d, hn::Sub(hn::ShiftRight<4>(q), eight));
}

template <typename T>
float DotFloat(const T* a, const float* x, int64_t n) {
  const hn::ScalableTag<float> d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  // Four accumulators hide the FMA latency.
  auto s0 = hn::Zero(d), s1 = hn::Zero(d), s2 = hn::Zero(d), s3 = hn::Zero(d);
  int64_t i = 0;
  for (; i + 4 * N <= n; i += 4 * N) {
    s0 = hn::MulAdd(LoadF(d, a + i), hn::LoadU(d, x + i), s0);
    s1 = hn::MulAdd(LoadF(d, a + i + N), hn::LoadU(d, x + i + N), s1);
    s2 = hn::MulAdd(LoadF(d, a + i + 2 * N), hn::LoadU(d, x + i + 2 * N), s2);
    s3 = hn::MulAdd(LoadF(d, a + i + 3 * N), hn::LoadU(d, x + i + 3 * N), s3);
  }
  for (; i + N <= n; i += N) s0 = hn::MulAdd(LoadF(d, a + i), hn::LoadU(d, x + i), s0);
  float sum = hn::GetLane(hn::SumOfLanes(d, hn::Add(hn::Add(s0, s1), hn::Add(s2, s3))));
  for (; i < n; ++i) sum += ScalarF(a + i) * x[i];
  return sum;
}

template <typename T>
void DequantFloat(const T* a, int64_t n, float* out) {
  const hn::ScalableTag<float> d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  int64_t i = 0;
  for (; i + N <= n; i += N) hn::StoreU(LoadF(d, a + i), d, out + i);
  for (; i < n; ++i) out[i] = ScalarF(a + i);
}

// Unscaled sum_j q_j x_j over one block, still as a vector. Scaling the block sum once by d
// instead of every q_j saves a multiply per vector; blocks are independent, so their short
// FMA chains overlap in the out-of-order core. Assumes N divides 16 (true on x86).
template <class D>
HWY_INLINE hn::Vec<D> BlockDotQ8(D d, const uint8_t* q, const float* x) {
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  auto acc = hn::Mul(LoadI8(d, q), hn::LoadU(d, x));
  for (int64_t j = N; j < kQK; j += N) acc = hn::MulAdd(LoadI8(d, q + j), hn::LoadU(d, x + j), acc);
  return acc;
}

template <class D>
HWY_INLINE hn::Vec<D> BlockDotQ4(D d, const uint8_t* q, const float* x) {
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  hn::Vec<D> lo, hi;
  // Byte j holds element j (low nibble) and element j + 16 (high nibble).
  LoadNibbles(d, q, lo, hi);
  auto acc = hn::MulAdd(hi, hn::LoadU(d, x + 16), hn::Mul(lo, hn::LoadU(d, x)));
  for (int64_t j = N; j < kQK / 2; j += N) {
    LoadNibbles(d, q + j, lo, hi);
    acc = hn::MulAdd(lo, hn::LoadU(d, x + j), acc);
    acc = hn::MulAdd(hi, hn::LoadU(d, x + 16 + j), acc);
  }
  return acc;
}

// Two blocks per step into separate accumulators, so the loop-carried FMA is not the bottleneck.
template <int64_t kBlockBytes, class BlockDot>
HWY_INLINE float DotBlocks(const uint8_t* row, const float* x, int64_t n, BlockDot block_dot) {
  const hn::ScalableTag<float> d;
  const int64_t nb = n / kQK;
  auto s0 = hn::Zero(d), s1 = hn::Zero(d);
  int64_t b = 0;
  for (; b + 2 <= nb; b += 2) {
    const uint8_t* pa = row + b * kBlockBytes;
    const uint8_t* pb = pa + kBlockBytes;
    s0 = hn::MulAdd(block_dot(d, pa + 2, x + b * kQK), BroadcastScale(d, pa), s0);
    s1 = hn::MulAdd(block_dot(d, pb + 2, x + (b + 1) * kQK), BroadcastScale(d, pb), s1);
  }
  if (b < nb) {
    const uint8_t* pa = row + b * kBlockBytes;
    s0 = hn::MulAdd(block_dot(d, pa + 2, x + b * kQK), BroadcastScale(d, pa), s0);
  }
  return hn::GetLane(hn::SumOfLanes(d, hn::Add(s0, s1)));
}

float DotQ8_0(const uint8_t* row, const float* x, int64_t n) {
  return DotBlocks<kQ8Bytes>(row, x, n, [](auto d, const uint8_t* q, const float* xb) HWY_ATTR {
    return BlockDotQ8(d, q, xb);
  });
}

float DotQ4_0(const uint8_t* row, const float* x, int64_t n) {
  return DotBlocks<kQ4Bytes>(row, x, n, [](auto d, const uint8_t* q, const float* xb) HWY_ATTR {
    return BlockDotQ4(d, q, xb);
  });
}

void DequantQ8_0(const uint8_t* row, int64_t n, float* out) {
  const hn::ScalableTag<float> d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  for (int64_t b = 0; b < n / kQK; ++b) {
    const uint8_t* p = row + b * kQ8Bytes;
    const auto db = BroadcastScale(d, p);
    for (int64_t j = 0; j < kQK; j += N) {
      hn::StoreU(hn::Mul(LoadI8(d, p + 2 + j), db), d, out + b * kQK + j);
    }
  }
}

void DequantQ4_0(const uint8_t* row, int64_t n, float* out) {
  const hn::ScalableTag<float> d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  hn::Vec<decltype(d)> lo, hi;
  for (int64_t b = 0; b < n / kQK; ++b) {
    const uint8_t* p = row + b * kQ4Bytes;
    const auto db = BroadcastScale(d, p);
    float* o = out + b * kQK;
    for (int64_t j = 0; j < kQK / 2; j += N) {
      LoadNibbles(d, p + 2 + j, lo, hi);
      hn::StoreU(hn::Mul(lo, db), d, o + j);
      hn::StoreU(hn::Mul(hi, db), d, o + 16 + j);
    }
  }
}

}  // namespace

float DotRowImpl(DType t, const void* row, const float* x, int64_t n) {
  switch (t) {
    case DType::kF32:
      return DotFloat(static_cast<const float*>(row), x, n);
    case DType::kF16:
      return DotFloat(static_cast<const hwy::float16_t*>(row), x, n);
    case DType::kBF16:
      return DotFloat(static_cast<const hwy::bfloat16_t*>(row), x, n);
    case DType::kQ8_0:
      return DotQ8_0(static_cast<const uint8_t*>(row), x, n);
    case DType::kQ4_0:
      return DotQ4_0(static_cast<const uint8_t*>(row), x, n);
    default:
      break;  // block formats go to block_formats::DotRow
  }
  return 0.0f;  // unreachable: callers validate the type
}

void DequantizeRowImpl(DType t, const void* row, int64_t n, float* out) {
  switch (t) {
    case DType::kF32:
      return DequantFloat(static_cast<const float*>(row), n, out);
    case DType::kF16:
      return DequantFloat(static_cast<const hwy::float16_t*>(row), n, out);
    case DType::kBF16:
      return DequantFloat(static_cast<const hwy::bfloat16_t*>(row), n, out);
    case DType::kQ8_0:
      return DequantQ8_0(static_cast<const uint8_t*>(row), n, out);
    case DType::kQ4_0:
      return DequantQ4_0(static_cast<const uint8_t*>(row), n, out);
    default:
      return;  // block formats go to block_formats::DequantizeRow
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace cqkv
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace cqkv {

HWY_EXPORT(DotRowImpl);
HWY_EXPORT(DequantizeRowImpl);

namespace {

void CheckArgs(DType t, int64_t n, const char* what) {
  switch (t) {
    case DType::kF32:
    case DType::kF16:
    case DType::kBF16:
    case DType::kQ8_0:
    case DType::kQ4_0:
      break;
    default:
      if (block_formats::IsBlockFormat(t)) break;
      Fail("{}: unsupported dtype id {}", what, static_cast<uint32_t>(t));
  }
  assert(n >= 0 && n % DTypeBlockSize(t) == 0);
  (void)n;
}

}  // namespace

void DequantizeRow(DType t, const void* row, int64_t n, float* out) {
  CheckArgs(t, n, "DequantizeRow");
  if (block_formats::IsBlockFormat(t)) {
    return block_formats::DequantizeRow(t, static_cast<const uint8_t*>(row), n, out);
  }
  HWY_DYNAMIC_DISPATCH(DequantizeRowImpl)(t, row, n, out);
}

float DotRow(DType t, const void* row, const float* x, int64_t n) {
  CheckArgs(t, n, "DotRow");
  if (block_formats::IsBlockFormat(t)) {
    return block_formats::DotRow(t, static_cast<const uint8_t*>(row), x, n);
  }
  return HWY_DYNAMIC_DISPATCH(DotRowImpl)(t, row, x, n);
}

void DequantizeRowRef(DType t, const void* row, int64_t n, float* out) {
  CheckArgs(t, n, "DequantizeRowRef");
  const auto* p = static_cast<const uint8_t*>(row);
  if (block_formats::IsBlockFormat(t)) return block_formats::DequantizeRowRef(t, p, n, out);
  switch (t) {
    case DType::kF32:
      std::memcpy(out, p, static_cast<size_t>(n) * 4);
      return;
    case DType::kF16:
      for (int64_t i = 0; i < n; ++i) out[i] = F16ToF32(LoadU16(p + 2 * i));
      return;
    case DType::kBF16:
      for (int64_t i = 0; i < n; ++i) out[i] = BF16ToF32(LoadU16(p + 2 * i));
      return;
    case DType::kQ8_0:
      for (int64_t b = 0; b < n / kQK; ++b) {
        const uint8_t* blk = p + b * kQ8Bytes;
        const float d = F16ToF32(LoadU16(blk));
        for (int64_t j = 0; j < kQK; ++j) {
          out[b * kQK + j] = static_cast<float>(static_cast<int8_t>(blk[2 + j])) * d;
        }
      }
      return;
    case DType::kQ4_0:
      for (int64_t b = 0; b < n / kQK; ++b) {
        const uint8_t* blk = p + b * kQ4Bytes;
        const float d = F16ToF32(LoadU16(blk));
        for (int64_t j = 0; j < kQK / 2; ++j) {
          out[b * kQK + j] = static_cast<float>((blk[2 + j] & 15) - 8) * d;
          out[b * kQK + j + 16] = static_cast<float>((blk[2 + j] >> 4) - 8) * d;
        }
      }
      return;
    default:
      return;  // block formats handled above
  }
}

float DotRowRef(DType t, const void* row, const float* x, int64_t n) {
  CheckArgs(t, n, "DotRowRef");
  // One block at a time keeps the reference allocation-free for any row length.
  const int64_t step = DTypeBlockSize(t);
  const int64_t bytes = DTypeBlockBytes(t);
  const auto* p = static_cast<const uint8_t*>(row);
  float buf[block_formats::kSuperBlock];
  float sum = 0.0f;
  for (int64_t i = 0; i < n; i += step) {
    DequantizeRowRef(t, p + i / step * bytes, step, buf);
    for (int64_t j = 0; j < step; ++j) sum += buf[j] * x[i + j];
  }
  return sum;
}

void QuantizeRowQ8_0(const float* x, int64_t n, void* out) {
  assert(n % kQK == 0);
  auto* o = static_cast<uint8_t*>(out);
  for (int64_t b = 0; b < n / kQK; ++b) {
    const float* xb = x + b * kQK;
    uint8_t* blk = o + b * kQ8Bytes;
    float amax = 0.0f;
    for (int64_t j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(xb[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const uint16_t dh = F32ToF16(d);
    std::memcpy(blk, &dh, 2);
    for (int64_t j = 0; j < kQK; ++j) {
      blk[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(std::round(xb[j] * id)));
    }
  }
}

void QuantizeRowQ4_0(const float* x, int64_t n, void* out) {
  assert(n % kQK == 0);
  auto* o = static_cast<uint8_t*>(out);
  for (int64_t b = 0; b < n / kQK; ++b) {
    const float* xb = x + b * kQK;
    uint8_t* blk = o + b * kQ4Bytes;
    float amax = 0.0f;
    float max = 0.0f;  // the signed value of largest magnitude
    for (int64_t j = 0; j < kQK; ++j) {
      if (std::fabs(xb[j]) > amax) {
        amax = std::fabs(xb[j]);
        max = xb[j];
      }
    }
    // Negative d maps the extreme value to nibble 0, using the asymmetric [-8, 7] range fully.
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const uint16_t dh = F32ToF16(d);
    std::memcpy(blk, &dh, 2);
    for (int64_t j = 0; j < kQK / 2; ++j) {
      const int q0 = std::min(15, static_cast<int>(static_cast<int8_t>(xb[j] * id + 8.5f)));
      const int q1 = std::min(15, static_cast<int>(static_cast<int8_t>(xb[j + 16] * id + 8.5f)));
      blk[2 + j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

void QuantizeRow(DType t, const float* x, int64_t n, void* out) {
  auto* h = static_cast<uint16_t*>(out);
  switch (t) {
    case DType::kF32:
      std::memcpy(out, x, static_cast<size_t>(n) * sizeof(float));
      return;
    case DType::kF16:
      for (int64_t i = 0; i < n; ++i) h[i] = F32ToF16(x[i]);
      return;
    case DType::kBF16:
      for (int64_t i = 0; i < n; ++i) h[i] = F32ToBF16(x[i]);
      return;
    case DType::kQ8_0:
      QuantizeRowQ8_0(x, n, out);
      return;
    case DType::kQ4_0:
      QuantizeRowQ4_0(x, n, out);
      return;
    default:
      break;
  }
  Fail("cannot encode rows of type {}", DTypeName(t));
}

}  // namespace cqkv
#endif  // HWY_ONCE
