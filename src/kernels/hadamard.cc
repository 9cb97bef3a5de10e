// Highway per-target butterflies for kernels/hadamard.h. A row of n = 2^k values goes through k
// stages of (a, b) -> (a + b, a - b) at distance h = 1, 2, ..., n/2. Stages with h below the
// vector width stay inside one vector: they are done together as one N x N Hadamard product per
// chunk of N values (N broadcast multiply-adds), the rest are plain vector butterflies.
#include "kernels/hadamard.h"

#include <cmath>
#include <vector>

#include "util/error.h"

#ifndef HWY_DISABLED_TARGETS
#define HWY_DISABLED_TARGETS (HWY_SSSE3 | HWY_SSE4 | HWY_AVX3_DL)
#endif

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/hadamard.cc"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#ifndef CQKV_KERNELS_HADAMARD_HELPERS_
#define CQKV_KERNELS_HADAMARD_HELPERS_
namespace cqkv {
namespace {

// Entry (i, j) of the unnormalised Sylvester matrix: (-1)^popcount(i & j).
inline float SylvesterSign(int64_t i, int64_t j) {
  return (__builtin_popcountll(static_cast<uint64_t>(i & j)) & 1) ? -1.0f : 1.0f;
}

void FwhtRowScalar(float* x, int64_t n) {
  for (int64_t h = 1; h < n; h *= 2) {
    for (int64_t i = 0; i < n; i += 2 * h) {
      for (int64_t j = i; j < i + h; ++j) {
        const float a = x[j], b = x[j + h];
        x[j] = a + b;
        x[j + h] = a - b;
      }
    }
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(n));
  for (int64_t j = 0; j < n; ++j) x[j] *= scale;
}

}  // namespace
}  // namespace cqkv
#endif  // CQKV_KERNELS_HADAMARD_HELPERS_

HWY_BEFORE_NAMESPACE();
namespace cqkv {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
namespace {

void FwhtImpl(float* HWY_RESTRICT x, int64_t rows, int64_t n, int64_t stride) {
  const hn::ScalableTag<float> d;
  const int64_t N = static_cast<int64_t>(hn::Lanes(d));
  if (n < N || N == 1) {
    for (int64_t r = 0; r < rows; ++r) FwhtRowScalar(x + r * stride, n);
    return;
  }
  // Column j of H_N (unnormalised), one vector each; N <= 16 on the enabled targets.
  HWY_ALIGN float cols[16 * 16];
  for (int64_t j = 0; j < N; ++j) {
    for (int64_t i = 0; i < N; ++i) cols[j * N + i] = SylvesterSign(i, j);
  }
  const auto scale = hn::Set(d, 1.0f / std::sqrt(static_cast<float>(n)));
  for (int64_t r = 0; r < rows; ++r) {
    float* row = x + r * stride;
    // Stages h < N: each chunk of N values times H_N.
    for (int64_t c = 0; c < n; c += N) {
      auto acc = hn::Mul(hn::Set(d, row[c]), hn::Load(d, cols));
      for (int64_t j = 1; j < N; ++j) {
        acc = hn::MulAdd(hn::Set(d, row[c + j]), hn::Load(d, cols + j * N), acc);
      }
      hn::StoreU(n == N ? hn::Mul(acc, scale) : acc, d, row + c);
    }
    // Stages h >= N; the last one also applies the normalisation.
    for (int64_t h = N; h < n; h *= 2) {
      const bool last = 2 * h == n;
      for (int64_t i = 0; i < n; i += 2 * h) {
        for (int64_t j = i; j < i + h; j += N) {
          const auto a = hn::LoadU(d, row + j), b = hn::LoadU(d, row + j + h);
          auto s = hn::Add(a, b), t = hn::Sub(a, b);
          if (last) {
            s = hn::Mul(s, scale);
            t = hn::Mul(t, scale);
          }
          hn::StoreU(s, d, row + j);
          hn::StoreU(t, d, row + j + h);
        }
      }
    }
  }
}

}  // namespace
}  // namespace HWY_NAMESPACE
}  // namespace cqkv
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace cqkv {

HWY_EXPORT(FwhtImpl);

void CheckHadamardSize(int64_t n, std::string_view what) {
  CQKV_CHECK(IsPowerOfTwo(n) && n <= kMaxHadamardSize,
             "{}: the Hadamard rotation needs a head_dim that is a power of two up to {}, got {}",
             what, kMaxHadamardSize, n);
}

void Fwht(float* x, int64_t rows, int64_t n, int64_t stride) {
  CheckHadamardSize(n, "Fwht");
  HWY_DYNAMIC_DISPATCH(FwhtImpl)(x, rows, n, stride);
}

void FwhtRef(float* x, int64_t rows, int64_t n, int64_t stride) {
  CheckHadamardSize(n, "FwhtRef");
  std::vector<double> y(static_cast<size_t>(n));
  for (int64_t r = 0; r < rows; ++r) {
    float* row = x + r * stride;
    for (int64_t j = 0; j < n; ++j) y[j] = row[j];
    for (int64_t h = 1; h < n; h *= 2) {
      for (int64_t i = 0; i < n; i += 2 * h) {
        for (int64_t j = i; j < i + h; ++j) {
          const double a = y[j], b = y[j + h];
          y[j] = a + b;
          y[j + h] = a - b;
        }
      }
    }
    const double scale = 1.0 / std::sqrt(static_cast<double>(n));
    for (int64_t j = 0; j < n; ++j) row[j] = static_cast<float>(y[j] * scale);
  }
}

}  // namespace cqkv
#endif  // HWY_ONCE
