// Highway per-target implementations of kernels/ops.h; this file is compiled once per target
// through foreach_target.h, and HWY_ONCE holds the dispatching entry points.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/ops.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
// Must come after foreach_target.h.
#include <hwy/highway.h>

#include "kernels/ops.h"
#include "util/fp16.h"

HWY_BEFORE_NAMESPACE();
namespace cqkv {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

float DotImpl(const float* HWY_RESTRICT a, const float* HWY_RESTRICT b, size_t n) {
  const hn::ScalableTag<float> d;
  const size_t N = hn::Lanes(d);
  auto s0 = hn::Zero(d), s1 = hn::Zero(d), s2 = hn::Zero(d), s3 = hn::Zero(d);
  size_t i = 0;
  for (; i + 4 * N <= n; i += 4 * N) {
    s0 = hn::MulAdd(hn::LoadU(d, a + i), hn::LoadU(d, b + i), s0);
    s1 = hn::MulAdd(hn::LoadU(d, a + i + N), hn::LoadU(d, b + i + N), s1);
    s2 = hn::MulAdd(hn::LoadU(d, a + i + 2 * N), hn::LoadU(d, b + i + 2 * N), s2);
    s3 = hn::MulAdd(hn::LoadU(d, a + i + 3 * N), hn::LoadU(d, b + i + 3 * N), s3);
  }
  for (; i + N <= n; i += N) s0 = hn::MulAdd(hn::LoadU(d, a + i), hn::LoadU(d, b + i), s0);
  float sum = hn::GetLane(hn::SumOfLanes(d, hn::Add(hn::Add(s0, s1), hn::Add(s2, s3))));
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

float DotF16Impl(const uint16_t* HWY_RESTRICT a, const float* HWY_RESTRICT b, size_t n) {
  const hn::ScalableTag<float> d;
  const hn::Rebind<hwy::float16_t, decltype(d)> dh;
  const size_t N = hn::Lanes(d);
  const auto* ah = reinterpret_cast<const hwy::float16_t*>(a);
  auto s0 = hn::Zero(d), s1 = hn::Zero(d);
  size_t i = 0;
  for (; i + 2 * N <= n; i += 2 * N) {
    s0 = hn::MulAdd(hn::PromoteTo(d, hn::LoadU(dh, ah + i)), hn::LoadU(d, b + i), s0);
    s1 = hn::MulAdd(hn::PromoteTo(d, hn::LoadU(dh, ah + i + N)), hn::LoadU(d, b + i + N), s1);
  }
  for (; i + N <= n; i += N) {
    s0 = hn::MulAdd(hn::PromoteTo(d, hn::LoadU(dh, ah + i)), hn::LoadU(d, b + i), s0);
  }
  float sum = hn::GetLane(hn::SumOfLanes(d, hn::Add(s0, s1)));
  for (; i < n; ++i) sum += F16ToF32(a[i]) * b[i];
  return sum;
}

void AxpyImpl(float alpha, const float* HWY_RESTRICT x, float* HWY_RESTRICT y, size_t n) {
  const hn::ScalableTag<float> d;
  const size_t N = hn::Lanes(d);
  const auto va = hn::Set(d, alpha);
  size_t i = 0;
  for (; i + N <= n; i += N) {
    hn::StoreU(hn::MulAdd(va, hn::LoadU(d, x + i), hn::LoadU(d, y + i)), d, y + i);
  }
  for (; i < n; ++i) y[i] += alpha * x[i];
}

void AxpyF16Impl(float alpha, const uint16_t* HWY_RESTRICT x, float* HWY_RESTRICT y, size_t n) {
  const hn::ScalableTag<float> d;
  const hn::Rebind<hwy::float16_t, decltype(d)> dh;
  const size_t N = hn::Lanes(d);
  const auto* xh = reinterpret_cast<const hwy::float16_t*>(x);
  const auto va = hn::Set(d, alpha);
  size_t i = 0;
  for (; i + N <= n; i += N) {
    const auto vx = hn::PromoteTo(d, hn::LoadU(dh, xh + i));
    hn::StoreU(hn::MulAdd(va, vx, hn::LoadU(d, y + i)), d, y + i);
  }
  for (; i < n; ++i) y[i] += alpha * F16ToF32(x[i]);
}

}  // namespace HWY_NAMESPACE
}  // namespace cqkv
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace cqkv {

HWY_EXPORT(DotImpl);
HWY_EXPORT(DotF16Impl);
HWY_EXPORT(AxpyImpl);
HWY_EXPORT(AxpyF16Impl);

float Dot(const float* a, const float* b, size_t n) {
  return HWY_DYNAMIC_DISPATCH(DotImpl)(a, b, n);
}
float DotF16(const uint16_t* a, const float* b, size_t n) {
  return HWY_DYNAMIC_DISPATCH(DotF16Impl)(a, b, n);
}
void Axpy(float alpha, const float* x, float* y, size_t n) {
  HWY_DYNAMIC_DISPATCH(AxpyImpl)(alpha, x, y, n);
}
void AxpyF16(float alpha, const uint16_t* x, float* y, size_t n) {
  HWY_DYNAMIC_DISPATCH(AxpyF16Impl)(alpha, x, y, n);
}
// Rounding to half is not hot (once per cached token); the scalar path is exact by construction.
void F32ToF16Row(const float* x, uint16_t* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = F32ToF16(x[i]);
}

float DotRef(const float* a, const float* b, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; ++i) s += static_cast<double>(a[i]) * b[i];
  return static_cast<float>(s);
}
float DotF16Ref(const uint16_t* a, const float* b, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; ++i) s += static_cast<double>(F16ToF32(a[i])) * b[i];
  return static_cast<float>(s);
}
void AxpyRef(float alpha, const float* x, float* y, size_t n) {
  for (size_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}
void AxpyF16Ref(float alpha, const uint16_t* x, float* y, size_t n) {
  for (size_t i = 0; i < n; ++i) y[i] += alpha * F16ToF32(x[i]);
}

}  // namespace cqkv
#endif  // HWY_ONCE
