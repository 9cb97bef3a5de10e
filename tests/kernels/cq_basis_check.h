// The check shared by the kernels whose values are bases of an expanded table (additive values,
// attn_cq_values_test.cc; residual / 4-bit tables, attn_cq_nibble_test.cc): kernel on every SIMD
// target and its scalar reference against dequantise-then-attend on the expanded table.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <algorithm>
#include "cq_fixtures.h"
#include "hwy_targets_testing.h"
#include "kernels/attn_cq.h"
#include "kernels/attn_cq_fastscan.h"

namespace cqkv::testing {

// Fixture(c, bits, hd, t1, seed) must be a CqFixture with `head_basis` and `max_abs_value`;
// kernel(view, basis, q, t0, t1, state, score) and ref likewise. All three compute the same exact
// sums in other orders (per-bit or per-bin sums, blocks, vectorised exp within a few ulp):
// outputs are convex combinations of values of magnitude <= max|v|, compared to 1e-5 of it.
template <class Fixture, class Kernel, class Ref>
void CheckBasisKernel(int c, int bits, int hd, int G, int64_t t0, int64_t t1, bool callback,
                      bool paged, const Kernel& kernel, const Ref& ref) {
  const Fixture f(c, bits, hd, t1, c * 100 + bits * 10 + G);
  const CqPaged pg(f, 256, t1);
  const CqHeadView& view = paged ? pg.view : f.view;
  std::mt19937 rng(G + hd);
  std::normal_distribution<float> nd;
  std::vector<float> q(static_cast<size_t>(G) * hd);
  for (auto& x : q) x = nd(rng) * 2.0f / std::sqrt(static_cast<float>(hd));
  CqScoreFn score;
  if (callback) {  // a stand-in for pre-RoPE scoring: any per-token function works
    score = [&](int64_t b0, int64_t n, float* s) {
      for (int h = 0; h < G; ++h) {
        for (int64_t i = 0; i < n; ++i) s[h * n + i] = std::sin(0.37f * (b0 + i) + h) * 6.0f;
      }
    };
  }
  CqState want(G, hd), sref(G, hd);
  CqAttendRef(f.view, q.data(), t0, t1, want.view(), score);
  ref(view, f.head_basis, q.data(), t0, t1, sref.view(), score);
  const auto o_want = want.Out(), o_sref = sref.Out();
  const double tol = 1e-5 * f.max_abs_value;
  const std::string where = std::to_string(c) + "c" + std::to_string(bits) +
                            "b hd=" + std::to_string(hd) + " G=" + std::to_string(G) + " [" +
                            std::to_string(t0) + "," + std::to_string(t1) +
                            ") cb=" + std::to_string(callback) + " paged=" + std::to_string(paged);
  for (size_t i = 0; i < o_want.size(); ++i) ASSERT_NEAR(o_sref[i], o_want[i], tol) << where;
  ForEachTarget([&] {
    CqState a(G, hd);
    kernel(view, f.head_basis, q.data(), t0, t1, a.view(), score);
    const auto o = a.Out();
    for (size_t i = 0; i < o.size(); ++i) ASSERT_NEAR(o[i], o_want[i], tol) << where << " i=" << i;
  });
}

// The same kernels with keys in the fast-scan layout (the fixture's codes rewritten block by
// block) against dequantise-then-attend on the keys token-major, within CqAttendFastScan's bound:
// tanh(E / 2) * (max - min of the value table), E the largest score bound, plus the 1e-5 relative
// slack of the exact kernels. kernel(view, basis, q, t0, t1, state).
template <class Fixture, class Kernel>
void CheckBasisKernelFastScan(int c, int bits, int hd, int G, int64_t t0, int64_t t1, bool paged,
                              float spread, const Kernel& kernel) {
  const Fixture f(c, bits, hd, t1, c * 10 + bits + G, 1);
  Fixture fs = f;  // the same codes, keys rewritten in the fast-scan layout
  const int groups = hd / c;
  const int64_t blocks = (t1 + kCqFsBlock - 1) / kCqFsBlock;
  fs.k_codes.assign(static_cast<size_t>(CqFsBlockBytes(groups, bits) * blocks + 4), 0);
  for (int64_t t = 0; t < t1; ++t) {
    for (int g = 0; g < groups; ++g) {
      const uint32_t code = ReadCqCode(f.k_codes.data(), t * groups + g, bits);
      const int64_t i = CqFsKeyIndex(t, g, groups, bits);
      if (bits == 8) {
        fs.k_codes[i] = static_cast<uint8_t>(code);
      } else {
        fs.k_codes[i >> 1] |= static_cast<uint8_t>(code << ((i & 1) * 4));
      }
    }
  }
  fs.Point();
  const CqPaged pg(fs, 256, t1);
  const CqHeadView& view = paged ? pg.view : fs.view;
  std::mt19937 rng(G + hd + static_cast<int>(t1));
  std::normal_distribution<float> nd;
  std::vector<float> q(static_cast<size_t>(G) * hd);
  for (auto& x : q) x = nd(rng) * spread / std::sqrt(static_cast<float>(hd));
  CqFsTables t;
  CqFsBuildTables(view, q.data(), G, hd, &t);
  const double E = *std::max_element(t.bound.begin(), t.bound.end());
  const auto [vmin, vmax] = std::minmax_element(f.v_table.begin(), f.v_table.end());
  const double tol = std::tanh(E / 2) * (*vmax - *vmin) + 1e-5 * f.max_abs_value;
  CqState ref(G, hd);
  CqAttendRef(f.view, q.data(), t0, t1, ref.view());
  const auto o_ref = ref.Out();
  ForEachTarget([&] {
    CqState a(G, hd);
    kernel(view, f.head_basis, q.data(), t0, t1, a.view());
    const auto o = a.Out();
    for (size_t i = 0; i < o.size(); ++i) {
      ASSERT_NEAR(o[i], o_ref[i], tol)
          << c << "c" << bits << "b hd=" << hd << " G=" << G << " [" << t0 << "," << t1
          << ") paged=" << paged << " spread=" << spread << " i=" << i;
    }
  });
}

}  // namespace cqkv::testing
