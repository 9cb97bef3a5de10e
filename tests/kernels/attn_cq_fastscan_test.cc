#include "kernels/attn_cq_fastscan.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "kernels/hwy_targets_testing.h"
#include "util/error.h"

namespace cqkv {
namespace {

void PutCode(std::vector<uint8_t>& s, int64_t i, uint32_t code, int bits) {
  if (bits == 8) {
    s[i] = static_cast<uint8_t>(code);
  } else {
    s[i >> 1] |= static_cast<uint8_t>(code << ((i & 1) * 4));
  }
}

// One KV head: random codes of `n` tokens (rounded up to whole blocks), keys both token-major
// (for the exact kernels) and in the fast-scan layout, optionally split into separately
// allocated pages of `page` tokens.
struct Head {
  int c, bits, hd, groups;
  int64_t n;
  std::vector<uint8_t> k_tm, k_fs, v_tm;  // token-major keys, fast-scan keys, token-major values
  std::vector<float> k_table, v_table;    // (groups, c, 2^b)
  std::vector<std::vector<uint8_t>> pages[3];
  std::vector<const uint8_t*> page_ptr[3];

  Head(int c_, int bits_, int hd_, int64_t n_, int seed, int64_t page = 0)
      : c(c_), bits(bits_), hd(hd_), groups(hd_ / c_), n((n_ + 63) / 64 * 64) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd;
    const int k = 1 << bits;
    const int64_t bytes = n * groups * bits / 8;
    k_tm.assign(bytes, 0);
    k_fs.assign(bytes, 0);
    v_tm.assign(bytes, 0);
    for (int64_t t = 0; t < n; ++t) {
      for (int g = 0; g < groups; ++g) {
        const uint32_t kc = rng() & (k - 1), vc = rng() & (k - 1);
        PutCode(k_tm, t * groups + g, kc, bits);
        PutCode(k_fs, CqFsKeyIndex(t, g, groups, bits), kc, bits);
        PutCode(v_tm, t * groups + g, vc, bits);
      }
    }
    k_table.resize(static_cast<size_t>(groups) * c * k);
    v_table.resize(k_table.size());
    for (auto& x : k_table) x = nd(rng);
    for (auto& x : v_table) x = nd(rng);
    if (page > 0) {
      const int64_t page_bytes = page * groups * bits / 8;
      const std::vector<uint8_t>* src[3] = {&k_tm, &k_fs, &v_tm};
      for (int s = 0; s < 3; ++s) {
        for (int64_t p = 0; p * page < n; ++p) {
          std::vector<uint8_t> bytes_p(page_bytes, 0xAB);  // past the end: garbage codes
          const int64_t from = p * page_bytes;
          const int64_t len = std::min(page_bytes, static_cast<int64_t>(src[s]->size()) - from);
          std::copy(src[s]->begin() + from, src[s]->begin() + from + len, bytes_p.begin());
          pages[s].push_back(std::move(bytes_p));
        }
        for (auto& p : pages[s]) page_ptr[s].push_back(p.data());
      }
    }
    page_tokens = page;
  }
  int64_t page_tokens = 0;

  CqHeadView View(bool fast_scan) const {
    CqHeadView v;
    if (page_tokens > 0) {
      v.k_pages = page_ptr[fast_scan ? 1 : 0].data();
      v.v_pages = page_ptr[2].data();
      v.page_tokens = page_tokens;
    } else {
      v.k_codes = fast_scan ? k_fs.data() : k_tm.data();
      v.v_codes = v_tm.data();
    }
    v.n_groups = groups;
    v.groups = groups;
    v.c = c;
    v.bits = bits;
    v.k_table = k_table.data();
    v.v_table = v_table.data();
    return v;
  }

  // Exact score of token t for query qh (double).
  double Exact(const float* qh, int64_t t) const {
    const int k = 1 << bits;
    double s = 0;
    for (int g = 0; g < groups; ++g) {
      const uint32_t code = ReadCqCode(k_tm.data(), t * groups + g, bits);
      for (int j = 0; j < c; ++j) s += double(qh[g * c + j]) * k_table[(g * c + j) * k + code];
    }
    return s;
  }
};

std::vector<float> Queries(int G, int hd, float spread, int seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  std::vector<float> q(static_cast<size_t>(G) * hd);
  for (auto& x : q) x = nd(rng) * spread / std::sqrt(static_cast<float>(hd));
  return q;
}

struct Case {
  int c, bits, hd, G;
};
const Case kCases[] = {{4, 8, 128, 4}, {8, 8, 128, 4}, {4, 4, 128, 4}, {8, 4, 128, 4},
                       {8, 8, 64, 1},  {4, 8, 64, 8},  {4, 4, 64, 1},  {8, 4, 128, 8}};

// Every vector target's block scores equal the scalar reference (same integer sums; the final
// scale * sum + offset may round once more without FMA, an error relative to |scale * sum|, which
// is up to |score| + |offset| when the two cancel).
TEST(CqFastScan, TargetsMatchScalarReference) {
  for (const Case& cs : kCases) {
    for (int64_t page : {int64_t{0}, int64_t{256}}) {
      SCOPED_TRACE(::testing::Message() << cs.c << "c" << cs.bits << "b hd " << cs.hd << " G "
                                        << cs.G << " page " << page);
      const Head h(cs.c, cs.bits, cs.hd, 700, cs.c + cs.bits, page);
      const CqHeadView view = h.View(true);
      const auto q = Queries(cs.G, cs.hd, 3.0f, cs.G);
      CqFsTables t;
      CqFsBuildTables(view, q.data(), cs.G, cs.hd, &t);
      const int64_t nb = h.n / 64, stride = h.n;
      std::vector<float> ref(static_cast<size_t>(cs.G) * stride);
      CqFsApproxScoresRef(view, t, 0, nb, ref.data(), stride);
      auto check = [&] {
        std::vector<float> got(ref.size(), NAN);
        CqFsApproxScores(view, t, 1, nb - 1, got.data() + 64, stride);
        CqFsApproxScores(view, t, 0, 1, got.data(), stride);
        for (size_t i = 0; i < ref.size(); ++i) {
          const float offset = t.offset[i / static_cast<size_t>(stride)];
          ASSERT_NEAR(got[i], ref[i], 1e-6f * (1 + std::fabs(ref[i]) + std::fabs(offset)))
              << "at " << i;
        }
      };
      check();  // the best target here (AVX-512 VBMI on this machine)
      testing::ForEachTarget(check);
    }
  }
}

// The stated bound holds for every token, and it is not loose by orders of magnitude: the worst
// observed error over a few thousand tokens reaches at least a tenth of it.
TEST(CqFastScan, ApproximateScoresWithinBound) {
  for (const Case& cs : kCases) {
    SCOPED_TRACE(::testing::Message() << cs.c << "c" << cs.bits << "b hd " << cs.hd);
    const Head h(cs.c, cs.bits, cs.hd, 4096, 7 * cs.c + cs.bits);
    const CqHeadView view = h.View(true);
    const auto q = Queries(cs.G, cs.hd, 3.0f, 11);
    CqFsTables t;
    CqFsBuildTables(view, q.data(), cs.G, cs.hd, &t);
    std::vector<float> s(static_cast<size_t>(cs.G) * h.n);
    CqFsApproxScores(view, t, 0, h.n / 64, s.data(), h.n);
    for (int g = 0; g < cs.G; ++g) {
      double worst = 0;
      for (int64_t i = 0; i < h.n; ++i) {
        const double err = std::fabs(s[g * h.n + i] - h.Exact(q.data() + g * cs.hd, i));
        ASSERT_LE(err, t.bound[g]) << "head " << g << " token " << i;
        worst = std::max(worst, err);
      }
      EXPECT_GE(worst, 0.1 * t.bound[g]) << "head " << g;
    }
  }
}

// Over any range, the max of the scores the kernel uses is the exact max, and every score is
// within the bound of the exact one.
TEST(CqFastScan, MaxOverRangeIsExact) {
  for (const Case& cs : kCases) {
    const Head h(cs.c, cs.bits, cs.hd, 1000, cs.G + cs.hd, 256);
    const CqHeadView view = h.View(true);
    for (float spread : {0.5f, 3.0f, 12.0f}) {
      const auto q = Queries(cs.G, cs.hd, spread, cs.c);
      CqFsTables t;
      CqFsBuildTables(view, q.data(), cs.G, cs.hd, &t);
      for (auto [t0, t1] : {std::pair<int64_t, int64_t>{0, 1}, {3, 70}, {63, 65}, {100, 999}}) {
        std::vector<float> s;
        const int64_t stride = CqFsScores(view, t, t0, t1, &s), base = t0 / 64 * 64;
        for (int g = 0; g < cs.G; ++g) {
          double got = -INFINITY, want = -INFINITY;
          for (int64_t i = t0; i < t1; ++i) {
            const double exact = h.Exact(q.data() + g * cs.hd, i), x = s[g * stride + i - base];
            ASSERT_LE(std::fabs(x - exact), t.bound[g]) << "token " << i;
            got = std::max(got, x);
            want = std::max(want, exact);
          }
          EXPECT_NEAR(got, want, 1e-5 * (1 + std::fabs(want)))
              << cs.c << "c" << cs.bits << "b spread " << spread << " [" << t0 << ", " << t1
              << ") head " << g;
        }
      }
    }
  }
}

// Attention against the exact scalar reference, within the stated output bound
// tanh(E / 2) * (max v - min v) (E = the largest score bound of the call, v over every value
// centroid channel) plus fp32 slack 1e-5.
void CheckAttend(const Case& cs, int64_t t0, int64_t t1, int64_t page, float spread) {
  SCOPED_TRACE(::testing::Message()
               << cs.c << "c" << cs.bits << "b hd " << cs.hd << " G " << cs.G << " [" << t0 << ", "
               << t1 << ") page " << page << " spread " << spread);
  const Head h(cs.c, cs.bits, cs.hd, t1, 3 * cs.c + cs.bits + static_cast<int>(t1), page);
  const auto q = Queries(cs.G, cs.hd, spread, static_cast<int>(t0 + cs.G));
  const int G = cs.G, hd = cs.hd;
  auto run = [&](bool fast) {
    std::vector<float> m(G), l(G), acc(static_cast<size_t>(G) * hd);
    const AttnState s{m.data(), l.data(), acc.data(), G, hd};
    ResetAttnState(s);
    if (fast) {
      CqAttendFastScan(h.View(true), q.data(), t0, t1, s);
    } else {
      CqAttendRef(h.View(false), q.data(), t0, t1, s);
    }
    for (size_t i = 0; i < acc.size(); ++i) acc[i] /= l[i / hd];
    return acc;
  };
  CqFsTables t;
  CqFsBuildTables(h.View(true), q.data(), G, hd, &t);
  const double E = *std::max_element(t.bound.begin(), t.bound.end());
  const auto [vmin, vmax] = std::minmax_element(h.v_table.begin(), h.v_table.end());
  const double tol = std::tanh(E / 2) * (*vmax - *vmin) + 1e-5;
  const auto want = run(false), got = run(true);
  for (size_t i = 0; i < want.size(); ++i) ASSERT_NEAR(got[i], want[i], tol) << "at " << i;
}

TEST(CqFastScan, AttendWithinBoundOfExactKernel) {
  for (const Case& cs : kCases) {
    for (auto [t0, t1] : {std::pair<int64_t, int64_t>{0, 1},
                          {0, 2},
                          {5, 64},
                          {0, 100},
                          {37, 613},
                          {0, 1024},
                          {300, 4097}}) {
      CheckAttend(cs, t0, t1, 0, 3.0f);
      CheckAttend(cs, t0, t1, 256, 3.0f);
    }
    CheckAttend(cs, 0, 2048, 512, 12.0f);  // peaked softmax
  }
}

TEST(CqFastScan, AttendAcrossTargets) {
  // The default dispatch (the best target) runs in the tests above.
  testing::ForEachTarget([] {
    CheckAttend({4, 8, 128, 4}, 17, 1500, 256, 3.0f);
    CheckAttend({4, 4, 128, 4}, 17, 1500, 256, 3.0f);
  });
}

// The fused kernel (scores written token-major into the lookup path's buffer) against the
// composition it replaces: CqFsScores per run handed to CqAttend (lookup path, or direct on
// short ranges) through a CqScoreFn as (heads, n) rows. Same integer sums, same runs, same
// candidates rescored: bitwise.
TEST(CqFastScan, FusedEqualsScoreHandOverBitwise) {
  for (const Case& cs : kCases) {
    for (auto [t0, t1] :
         {std::pair<int64_t, int64_t>{0, 1}, {5, 64}, {37, 613}, {0, 2048}, {300, 4097}}) {
      for (int64_t page : {int64_t{0}, int64_t{256}}) {
        SCOPED_TRACE(::testing::Message() << cs.c << "c" << cs.bits << "b hd " << cs.hd << " G "
                                          << cs.G << " [" << t0 << ", " << t1 << ") page " << page);
        const Head h(cs.c, cs.bits, cs.hd, t1, cs.c * cs.bits + static_cast<int>(t0), page);
        const CqHeadView view = h.View(true);
        const auto q = Queries(cs.G, cs.hd, 6.0f, static_cast<int>(t1));
        const int G = cs.G, hd = cs.hd;
        CqFsTables t;
        CqFsBuildTables(view, q.data(), G, hd, &t);
        std::vector<float> rows;
        const CqScoreFn hand_over = [&](int64_t b0, int64_t n, float* out) {
          const int64_t stride = CqFsScores(view, t, b0, b0 + n, &rows), at = b0 % 64;
          for (int g = 0; g < G; ++g) {
            std::copy_n(rows.data() + g * stride + at, n, out + g * n);
          }
        };
        std::vector<float> m[2], l[2], acc[2];
        for (int k = 0; k < 2; ++k) {
          m[k].resize(G);
          l[k].resize(G);
          acc[k].resize(static_cast<size_t>(G) * hd);
          const AttnState s{m[k].data(), l[k].data(), acc[k].data(), G, hd};
          ResetAttnState(s);
          if (k == 0) {
            CqAttend(view, q.data(), t0, t1, s, hand_over);
          } else {
            CqAttendFastScan(view, q.data(), t0, t1, s);
          }
        }
        EXPECT_EQ(m[0], m[1]);
        EXPECT_EQ(l[0], l[1]);
        EXPECT_EQ(acc[0], acc[1]);
      }
    }
  }
}

TEST(CqFastScan, RefusesUnsupportedViews) {
  Head h(4, 8, 64, 64, 1);
  CqHeadView v = h.View(true);
  std::vector<float> q(64), m(1), l(1), acc(64);
  const AttnState s{m.data(), l.data(), acc.data(), 1, 64};
  ResetAttnState(s);
  v.bits = 6;
  EXPECT_THROW(CqAttendFastScan(v, q.data(), 0, 10, s), Error);
  v.bits = 8;
  v.n_groups = 2 * v.groups;
  EXPECT_THROW(CqAttendFastScan(v, q.data(), 0, 10, s), Error);
}

}  // namespace
}  // namespace cqkv
