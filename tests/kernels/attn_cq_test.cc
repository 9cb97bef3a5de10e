#include "kernels/attn_cq.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "cq_fixtures.h"
#include "sanitizer_testing.h"

namespace cqkv {
namespace {

using Fixture = testing::CqFixture;
using Paged = testing::CqPaged;
using State = testing::CqState;

// Both paths sum the same fp32 products in another order (tables, histograms, lazy max); the
// normalised output is a convex combination of centroids ~N(0,1): 1e-5 absolute, i.e. relative.
// Queries are scaled so scores span several units (peaked softmax, lazy-max raises happen).
void Check(int c, int bits, int hd, int G, int64_t t0, int64_t t1, bool callback, CqPath path) {
  Fixture f(c, bits, hd, t1, c * 100 + bits * 10 + G);
  std::mt19937 rng(G + hd);
  std::normal_distribution<float> nd;
  std::vector<float> q(static_cast<size_t>(G) * hd);
  for (auto& x : q) x = nd(rng) * 2.0f / std::sqrt(static_cast<float>(hd));
  // A stand-in for pre-RoPE scoring: any per-token function works for the kernel.
  CqScoreFn score;
  if (callback) {
    score = [&](int64_t b0, int64_t n, float* s) {
      for (int h = 0; h < G; ++h) {
        for (int64_t i = 0; i < n; ++i) s[h * n + i] = std::sin(0.37f * (b0 + i) + h) * 6.0f;
      }
    };
  }
  State a(G, hd), r(G, hd);
  CqAttend(f.view, q.data(), t0, t1, a.view(), score, path);
  CqAttendRef(f.view, q.data(), t0, t1, r.view(), score);
  const auto oa = a.Out(), orf = r.Out();
  for (size_t i = 0; i < oa.size(); ++i) {
    ASSERT_NEAR(oa[i], orf[i], 1e-5)
        << c << "c" << bits << "b hd=" << hd << " G=" << G << " [" << t0 << "," << t1
        << ") cb=" << callback << " path=" << static_cast<int>(path) << " i=" << i;
  }
}

TEST(AttnCq, LookupAndDirectMatchReference) {
  const std::pair<int, int> configs[] = {{2, 8}, {4, 8}, {8, 8}, {4, 4}, {8, 4},
                                         {1, 1}, {4, 5}, {2, 3}, {8, 2}};
  for (auto [c, bits] : configs) {
    for (int hd : {64, 128}) {
      for (int G : {1, 4, 8, 5}) {
        for (auto [t0, t1] : {std::pair<int64_t, int64_t>{0, 1}, {3, 70}, {0, 700}, {129, 1000}}) {
          for (CqPath path : {CqPath::kLookup, CqPath::kDirect}) {
            Check(c, bits, hd, G, t0, t1, false, path);
          }
        }
        Check(c, bits, hd, G, 10, 400, true, CqPath::kLookup);
        Check(c, bits, hd, G, 10, 400, true, CqPath::kDirect);
        // Several sub-blocks of the grouped byte-code path (b = 8, and 4-bit pairs).
        Check(c, bits, hd, G, 5, 1800, false, CqPath::kLookup);
        Check(c, bits, hd, G, 10, 1300, true, CqPath::kLookup);
      }
    }
  }
}

// Paged codes give bitwise the results of one stream: pages are read a piece at a time inside
// the same sub-blocks (lookup), per token (direct, reference). Ranges spanning 3+ pages from odd
// starts, 4-bit pairs on long ranges, the score callback. Under the sanitizers (where this test
// took 51 s) pages of 256 and 512 tokens only, and the whole-stream range from token 0 becomes
// [0, 600): still an aligned start, 3+ pages from odd starts, page ends inside a range
// (1023/1024) and the partial last page ([1023, 2099)).
TEST(AttnCq, PagedCodesMatchOneStreamBitwise) {
  const std::vector<int64_t> page_sizes =
      testing::kSanitized ? std::vector<int64_t>{256, 512} : std::vector<int64_t>{256, 512, 1024};
  const int64_t from_zero_end = testing::kSanitized ? 600 : 2100;
  const std::pair<int, int> configs[] = {{8, 8}, {4, 8}, {4, 4}, {2, 4}, {8, 4}, {3, 5}, {1, 1}};
  for (auto [c, bits] : configs) {
    const int hd = c == 3 ? 96 : 128;
    const int64_t n_tokens = 2100;
    const Fixture f(c, bits, hd, n_tokens, 7 * c + bits);
    for (int G : {1, 4, 8}) {
      std::mt19937 rng(G);
      std::normal_distribution<float> nd;
      std::vector<float> q(static_cast<size_t>(G) * hd);
      for (auto& x : q) x = nd(rng) * 2.0f / std::sqrt(static_cast<float>(hd));
      CqScoreFn score = [&](int64_t b0, int64_t n, float* s) {
        for (int h = 0; h < G; ++h) {
          for (int64_t i = 0; i < n; ++i) s[h * n + i] = std::sin(0.37f * (b0 + i) + h) * 6.0f;
        }
      };
      for (int64_t page_tokens : page_sizes) {
        const Paged paged(f, page_tokens, n_tokens);
        for (auto [t0, t1] : {std::pair<int64_t, int64_t>{301, 1100},
                              {0, from_zero_end},
                              {255, 257},
                              {5, 1800},
                              {1023, 2099}}) {
          for (bool cb : {false, true}) {
            for (int path = 0; path < 3; ++path) {
              State a(G, hd), b(G, hd);
              if (path == 2) {
                CqAttendRef(f.view, q.data(), t0, t1, a.view(), cb ? score : nullptr);
                CqAttendRef(paged.view, q.data(), t0, t1, b.view(), cb ? score : nullptr);
              } else {
                const CqPath p = path == 0 ? CqPath::kLookup : CqPath::kDirect;
                CqAttend(f.view, q.data(), t0, t1, a.view(), cb ? score : nullptr, p);
                CqAttend(paged.view, q.data(), t0, t1, b.view(), cb ? score : nullptr, p);
              }
              const std::string where =
                  std::to_string(c) + "c" + std::to_string(bits) + "b G=" + std::to_string(G) +
                  " P=" + std::to_string(page_tokens) + " [" + std::to_string(t0) + "," +
                  std::to_string(t1) + ") cb=" + std::to_string(cb) +
                  " path=" + std::to_string(path);
              ASSERT_EQ(a.m, b.m) << where;
              ASSERT_EQ(a.l, b.l) << where;
              ASSERT_EQ(a.acc, b.acc) << where;
            }
          }
        }
      }
    }
  }
}

TEST(AttnCq, WideCodesUseTheDirectPath) {
  Check(2, 12, 64, 4, 0, 300, false, CqPath::kAuto);
  Check(2, 12, 64, 4, 0, 300, false, CqPath::kLookup);  // b > 8 falls back to direct
}

}  // namespace
}  // namespace cqkv
