#include "kv/group_quant.h"

#include <algorithm>
#include <cassert>
#include <cmath>

#include "util/fp16.h"

namespace cqkv {
namespace {

// NormalFloat levels, derived as QLoRA / bitsandbytes (create_normal_map) derive NF4, for
// k = 2^bits levels:
//   offset = 1 - (1/(2(k-1)) + 1/(2k)) / 2         (0.8541667, 0.9330357, 0.9677083 for k = 4, 8,
//   16) positive: Phi^-1(p) for the first k/2 points p of linspace(offset, 0.5, k/2 + 1) negative:
//   -Phi^-1(p) for the first k/2 - 1 points p of linspace(offset, 0.5, k/2) plus an exact 0;
//   everything divided by the largest value, so the range is [-1, 1].
// One more positive than negative level keeps 0 exactly representable with an even count. The
// offset puts the outermost levels at the mean of the centres of the outermost quantile bins
// of a (k-1)- and a k-level split, rather than at an infinite quantile.
// NF4 is bitsandbytes' table verbatim (its float32 linspace and truncated offset put it within
// 2e-7 of the exact-arithmetic derivation); NF2 and NF3 are the exact derivation rounded to float.
// nf_cache_test re-derives all three from Phi^-1.
constexpr float kNf2[4] = {-1.0f, 0.0f, 0.435818165f, 1.0f};
constexpr float kNf3[8] = {-1.0f,        -0.535022708f, -0.246931432f, 0.0f,
                           0.183337480f, 0.381993954f,  0.622985742f,  1.0f};
constexpr float kNf4[16] = {-1.0f,
                            -0.6961928009986877f,
                            -0.5250730514526367f,
                            -0.39491748809814453f,
                            -0.28444138169288635f,
                            -0.18477343022823334f,
                            -0.09105003625154495f,
                            0.0f,
                            0.07958029955625534f,
                            0.16093020141124725f,
                            0.24611230194568634f,
                            0.33791524171829224f,
                            0.44070982933044434f,
                            0.5626170039176941f,
                            0.7229568362236023f,
                            1.0f};

}  // namespace

UniformGroup UniformGroup::Fit(const float* x, int64_t n, int64_t stride, int bits) {
  assert(n > 0 && bits >= 1 && bits <= 8);
  float lo = x[0], hi = x[0];
  for (int64_t i = 1; i < n; ++i) {
    lo = std::min(lo, x[i * stride]);
    hi = std::max(hi, x[i * stride]);
  }
  const float scale = (hi - lo) / static_cast<float>((1u << bits) - 1u);
  return FromHalf(F32ToF16(scale), F32ToF16(lo), bits);
}

UniformGroup UniformGroup::FromHalf(uint16_t scale, uint16_t min, int bits) {
  return UniformGroup{F16ToF32(scale), F16ToF32(min), bits};
}

uint16_t UniformGroup::scale_half() const { return F32ToF16(scale); }
uint16_t UniformGroup::min_half() const { return F32ToF16(min); }

uint32_t UniformGroup::Encode(float x) const {
  // A scale that rounded to fp16 zero (range below 6e-8) codes the whole group as min.
  if (!(scale > 0.0f)) return 0;
  const float q = std::nearbyint((x - min) / scale);
  // Written so a NaN lands on code 0 instead of an out-of-range integer conversion.
  if (!(q > 0.0f)) return 0;
  return static_cast<uint32_t>(std::min(q, static_cast<float>((1u << bits) - 1u)));
}

std::span<const float> NormalFloatLevels(int bits) {
  switch (bits) {
    case 2:
      return kNf2;
    case 3:
      return kNf3;
    case 4:
      return kNf4;
    default:
      assert(false && "NormalFloat levels exist for 2, 3 and 4 bits");
      return {};
  }
}

NormalFloatGroup NormalFloatGroup::Fit(const float* x, int64_t n, int64_t stride, int bits) {
  assert(n > 0);
  float amax = 0.0f;
  for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i * stride]));
  return FromHalf(F32ToF16(amax), bits);
}

NormalFloatGroup NormalFloatGroup::FromHalf(uint16_t absmax, int bits) {
  return NormalFloatGroup{F16ToF32(absmax), bits, NormalFloatLevels(bits).data()};
}

uint16_t NormalFloatGroup::absmax_half() const { return F32ToF16(absmax); }

uint32_t NormalFloatGroup::Encode(float x) const {
  const int k = 1 << bits;
  // An all-zero group (or one below fp16's smallest subnormal) codes the exact 0 level.
  const float y = absmax > 0.0f ? x / absmax : 0.0f;
  // Levels ascend: walk up while y lies past the midpoint to the next level.
  int c = 0;
  while (c + 1 < k && y > 0.5f * (levels[c] + levels[c + 1])) ++c;
  return static_cast<uint32_t>(c);
}

}  // namespace cqkv
