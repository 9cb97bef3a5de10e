// Test helper for the Highway kernels: runs a check once per SIMD target, so one machine covers
// every dispatch path the kernels compile (AVX-512, AVX2 and the scalar fallback).
#pragma once

#include <hwy/targets.h>

#include <cstdint>
#include <functional>

#include <gtest/gtest.h>

namespace cqkv::testing {

// Runs `body` once per vector target compiled into the kernels that this CPU can run (plus the
// scalar fallback), so an AVX-512 machine also checks the AVX2 code.
inline void ForEachTarget(const std::function<void()>& body) {
  struct Restore {
    ~Restore() { hwy::SetSupportedTargetsForTest(0); }
  } restore;
  const int64_t supported = hwy::SupportedTargets();
  for (int64_t target : {int64_t{HWY_AVX3}, int64_t{HWY_AVX2}, int64_t{HWY_SCALAR}}) {
    if (target != HWY_SCALAR && (supported & target) == 0) continue;
    hwy::SetSupportedTargetsForTest(target);
    SCOPED_TRACE(hwy::TargetName(target));
    body();
  }
}

}  // namespace cqkv::testing
