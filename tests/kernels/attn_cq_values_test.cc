#include "kernels/attn_cq_values.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "hwy_targets_testing.h"
#include "quant/additive.h"
#include "util/error.h"

namespace cqkv {
namespace {

// One KV head (head 1 of 2) of random codes, random key centroids and random additive value
// bases; v_table holds the bases' expansions in the channel-major layout CqAttendRef reads, so
// CqAttendRef is dequantise-then-attend with exactly the values the bases represent.
struct Fixture {
  int c, bits, hd;
  std::vector<uint8_t> k_codes, v_codes;
  std::vector<float> k_table, v_table, basis;  // tables (groups, c, 2^b); basis (groups, b+1, c)
  CqHeadView view;
  const float* head_basis = nullptr;
  float max_abs_value = 0;

  Fixture(int c_, int bits_, int hd_, int64_t n_tokens, int seed) : c(c_), bits(bits_), hd(hd_) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd;
    const int n_kv = 2, kvh = 1, groups = hd / c;
    const int64_t n_groups = int64_t{n_kv} * groups, k = int64_t{1} << bits;
    const int64_t n_codes = n_tokens * n_groups;
    k_codes.assign(static_cast<size_t>((n_codes * bits + 7) / 8 + 4), 0);
    v_codes = k_codes;
    for (auto* codes : {&k_codes, &v_codes}) {
      for (int64_t i = 0; i < n_codes; ++i) {
        const uint64_t code = rng() & (k - 1);
        for (int bit = 0; bit < bits; ++bit) {
          const uint64_t pos = static_cast<uint64_t>(i) * bits + bit;
          (*codes)[pos >> 3] |= static_cast<uint8_t>(((code >> bit) & 1) << (pos & 7));
        }
      }
    }
    k_table.resize(static_cast<size_t>(n_groups * c * k));
    for (auto& x : k_table) x = nd(rng);
    basis.resize(static_cast<size_t>(n_groups * (bits + 1) * c));
    // Basis vectors of 1/sqrt(b) so values stay ~N(0, 2) whatever b.
    for (auto& x : basis) x = nd(rng) / std::sqrt(static_cast<float>(bits));
    v_table.resize(k_table.size());
    std::vector<float> cent(static_cast<size_t>(k * c));
    for (int64_t g = 0; g < n_groups; ++g) {
      ExpandAdditive(basis.data() + g * (bits + 1) * c, bits, c, cent.data());
      for (int64_t code = 0; code < k; ++code) {
        for (int j = 0; j < c; ++j) {
          const float v = cent[code * c + j];
          v_table[(g * c + j) * k + code] = v;
          max_abs_value = std::max(max_abs_value, std::abs(v));
        }
      }
    }
    view.k_codes = k_codes.data();
    view.v_codes = v_codes.data();
    view.n_groups = n_groups;
    view.g0 = kvh * groups;
    view.groups = groups;
    view.c = c;
    view.bits = bits;
    view.k_table = k_table.data() + int64_t{view.g0} * c * k;
    view.v_table = v_table.data() + int64_t{view.g0} * c * k;
    head_basis = basis.data() + int64_t{view.g0} * (bits + 1) * c;
  }
};

struct State {
  std::vector<float> m, l, acc;
  int hd;
  State(int heads, int hd_) : m(heads), l(heads), acc(static_cast<size_t>(heads) * hd_), hd(hd_) {
    ResetAttnState(view());
  }
  AttnState view() { return {m.data(), l.data(), acc.data(), static_cast<int>(m.size()), hd}; }
  std::vector<double> Out() const {
    std::vector<double> o(acc.size());
    for (size_t i = 0; i < o.size(); ++i) o[i] = acc[i] / l[i / hd];
    return o;
  }
};

// The same codes cut into pages of page_tokens tokens (each its own allocation).
struct Paged {
  std::vector<std::vector<uint8_t>> k, v;
  std::vector<const uint8_t*> kp, vp;
  CqHeadView view;
  Paged(const Fixture& f, int64_t page_tokens, int64_t n_tokens) : view(f.view) {
    const int64_t page_bytes = page_tokens * f.view.n_groups * f.bits / 8;
    for (int64_t p = 0; p * page_tokens < n_tokens; ++p) {
      for (auto [src, dst] : {std::pair{&f.k_codes, &k}, std::pair{&f.v_codes, &v}}) {
        std::vector<uint8_t> page(static_cast<size_t>(page_bytes + 4), 0xff);
        const int64_t from = p * page_bytes;
        const int64_t n = std::min<int64_t>(page_bytes, static_cast<int64_t>(src->size()) - from);
        std::copy_n(src->begin() + from, n, page.begin());
        dst->push_back(std::move(page));
      }
      kp.push_back(k.back().data());
      vp.push_back(v.back().data());
    }
    view.k_codes = view.v_codes = nullptr;
    view.k_pages = kp.data();
    view.v_pages = vp.data();
    view.page_tokens = page_tokens;
  }
};

// The SIMD bit sums add each lane's weights in token order, as the definition does: bitwise equal.
TEST(AdditiveBitSums, EqualsTheScalarDefinitionBitwise) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> ud(0, 1);
  for (int64_t row_bytes : {8, 16, 32, 40}) {
    for (int heads : {1, 3, 4, 5, 8}) {
      for (int64_t n : {1, 7, 256}) {
        std::vector<uint8_t> rows(static_cast<size_t>(n * row_bytes));
        for (auto& b : rows) b = static_cast<uint8_t>(rng());
        std::vector<float> p(static_cast<size_t>(heads * n));
        for (auto& x : p) x = ud(rng);
        testing::ForEachTarget([&] {
          std::vector<float> a(static_cast<size_t>(heads * row_bytes * 8), 0.0f), r = a;
          AdditiveBitSums(rows.data(), row_bytes, row_bytes, n, p.data(), n, heads, a.data());
          AdditiveBitSumsRef(rows.data(), row_bytes, row_bytes, n, p.data(), n, heads, r.data());
          ASSERT_EQ(a, r) << row_bytes << " bytes, " << heads << " heads, n=" << n;
        });
      }
    }
  }
  // Closed form: one head, all-ones rows sum every weight into every lane.
  std::vector<uint8_t> ones(3 * 8, 0xff);
  const std::vector<float> w = {0.5f, 0.25f, 2.0f};
  std::vector<float> s(64, 1.0f);
  AdditiveBitSums(ones.data(), 8, 8, 3, w.data(), 3, 1, s.data());
  for (float x : s) EXPECT_EQ(x, 3.75f);
}

// Kernel (every SIMD target) vs its scalar reference vs dequantise-then-attend (CqAttendRef on
// the expanded centroids). All three compute the same exact sums in other orders (per-bit sums,
// 256-token blocks, vectorised exp within a few ulp): outputs are convex combinations of values
// of magnitude <= max|v|, compared to 1e-5 relative to it.
void Check(int c, int bits, int hd, int G, int64_t t0, int64_t t1, bool callback, bool paged) {
  const Fixture f(c, bits, hd, t1, c * 100 + bits * 10 + G);
  const Paged pg(f, 256, t1);
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
  State ref(G, hd), sref(G, hd);
  CqAttendRef(f.view, q.data(), t0, t1, ref.view(), score);
  CqAttendAdditiveRef(view, f.head_basis, q.data(), t0, t1, sref.view(), score);
  const auto o_ref = ref.Out(), o_sref = sref.Out();
  const double tol = 1e-5 * f.max_abs_value;
  const std::string where = std::to_string(c) + "c" + std::to_string(bits) +
                            "b hd=" + std::to_string(hd) + " G=" + std::to_string(G) + " [" +
                            std::to_string(t0) + "," + std::to_string(t1) +
                            ") cb=" + std::to_string(callback) + " paged=" + std::to_string(paged);
  for (size_t i = 0; i < o_ref.size(); ++i) ASSERT_NEAR(o_sref[i], o_ref[i], tol) << where;
  testing::ForEachTarget([&] {
    State a(G, hd);
    CqAttendAdditive(view, f.head_basis, q.data(), t0, t1, a.view(), score);
    const auto o = a.Out();
    for (size_t i = 0; i < o.size(); ++i) ASSERT_NEAR(o[i], o_ref[i], tol) << where << " i=" << i;
  });
}

TEST(CqAttendAdditive, MatchesDequantiseThenAttend) {
  const std::pair<int, int> configs[] = {{4, 8}, {8, 8}, {4, 4}, {8, 4}, {2, 4}, {8, 2}, {2, 8}};
  for (auto [c, bits] : configs) {
    for (int hd : {64, 128}) {
      for (int G : {1, 4, 5, 8}) {
        // Short ranges (direct key scores), long ones (key tables, several blocks, odd ends).
        for (auto [t0, t1] : {std::pair<int64_t, int64_t>{0, 1}, {3, 70}, {0, 700}, {129, 1000}}) {
          Check(c, bits, hd, G, t0, t1, false, false);
        }
        Check(c, bits, hd, G, 10, 400, true, false);
        Check(c, bits, hd, G, 200, 1300, false, true);
        Check(c, bits, hd, G, 255, 900, true, true);
      }
    }
  }
}

TEST(CqAttendAdditive, RefusesCodesOffByteBoundaries) {
  // 4c4b at head dim 4: one 4-bit code per head, so head 1 starts mid-byte.
  const Fixture f(4, 4, 4, 8, 1);
  State a(1, 4);
  std::vector<float> q(4, 0.1f);
  EXPECT_THROW(CqAttendAdditive(f.view, f.head_basis, q.data(), 0, 8, a.view()), Error);
}

}  // namespace
}  // namespace cqkv
