#include "kernels/attn_cq_ropecomm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <complex>
#include <random>
#include <vector>

#include "hwy_targets_testing.h"
#include "test_util.h"
#include "util/error.h"

namespace cqkv {
namespace {

// One KV head of random b-bit codes over `tokens` tokens, packed as CqHeadView reads them (2 KV
// heads per token, this one second), optionally split into pages of 256 tokens, with random
// centroid-major pre-RoPE centroids (groups, 2^b, c).
struct Head {
  std::vector<uint8_t> codes;
  std::vector<std::vector<uint8_t>> pages;
  std::vector<const uint8_t*> page_ptrs;
  std::vector<float> centroids;
  CqHeadView view;

  Head(int c, int bits, int hd, int64_t tokens, bool paged, int seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd;
    const int groups = hd / c;
    const int64_t k = int64_t{1} << bits;
    centroids.resize(static_cast<size_t>(groups * k * c));
    for (float& x : centroids) x = nd(rng);
    view.n_groups = 2 * groups;
    view.g0 = groups;
    view.groups = groups;
    view.c = c;
    view.bits = bits;
    const int64_t page = paged ? 256 : tokens;
    const int64_t n_pages = (tokens + page - 1) / page;
    pages.resize(static_cast<size_t>(n_pages));
    for (auto& p : pages) p.assign(static_cast<size_t>(page * view.n_groups * bits / 8 + 8), 0);
    for (int64_t t = 0; t < tokens; ++t) {
      for (int g = 0; g < view.n_groups; ++g) {
        const uint32_t code = rng() % k;
        const int64_t i = (t % page) * view.n_groups + g;
        const uint64_t bit = static_cast<uint64_t>(i) * bits;
        uint8_t* p = pages[t / page].data();
        for (int b = 0; b < bits; ++b) {
          if (code >> b & 1) p[(bit + b) / 8] |= static_cast<uint8_t>(1u << ((bit + b) % 8));
        }
      }
    }
    if (paged) {
      for (auto& p : pages) page_ptrs.push_back(p.data());
      view.k_pages = view.v_pages = page_ptrs.data();
      view.page_tokens = page;
    } else {
      view.k_codes = view.v_codes = pages[0].data();
    }
  }
};

// Closed form, independent of RopeTable and ApplyRope: with NORM pairing the score is
// Re sum_p conj(q_p) e^{i t w_p} z_p, w_p = base^(-2p/d), in std::complex<double>. One group of
// one pair per code (c = 2, 1 bit) and head dim 4 (the kernels' scalar tail), and head dim 32
// (vector loops), at positions on both sides of the 32-token block and 2048-token step edges.
// Tolerance 2e-6 x sum_p |q_p||z_p|: three fp32-rounded phase factors (~6e-8 each) and fp32 sums.
TEST(RopeCommScores, ClosedFormComplexPhases) {
  testing::ForEachTarget([] {
    for (int hd : {4, 32}) {
      RopeParams rp;
      rp.freq_base = 100.0f;
      const int64_t tokens = 4200;
      Head head(2, 1, hd, tokens, /*paged=*/true, 7);
      RopeCommPhases ph(hd, tokens, rp);
      const RopeCommKeys keys{head.view, head.centroids.data(), &ph};
      std::vector<float> q(static_cast<size_t>(hd));
      std::mt19937 rng(3);
      std::normal_distribution<float> nd;
      for (float& x : q) x = nd(rng);
      for (int64_t t : {0, 1, 31, 32, 33, 2047, 2048, 2049, 4199}) {
        float got = 0;
        RopeCommScores(keys, q.data(), 1, t, 1, &got);
        const uint8_t* stream;
        const int64_t base = CqTokenCodes(head.view, 0, t, &stream);
        std::complex<double> sum = 0;
        double scale = 0;
        for (int p = 0; p < hd / 2; ++p) {
          const uint32_t code = ReadCqCode(stream, base + p, 1);
          const float* z = head.centroids.data() + (p * 2 + code) * 2;
          const std::complex<double> zp(z[0], z[1]), qp(q[2 * p], q[2 * p + 1]);
          const double w = std::pow(100.0, -2.0 * p / hd);
          sum += std::conj(qp) * std::polar(1.0, static_cast<double>(t) * w) * zp;
          scale += std::abs(qp) * std::abs(zp);
        }
        EXPECT_NEAR(got, sum.real(), 2e-6 * scale) << "hd " << hd << " t " << t;
      }
    }
  });
}

// SIMD kernel against the scalar definition (ApplyRope per token, double dots) over configs,
// head sizes (including one that leaves a scalar tail of pairs), GQA group sizes that do and do
// not fill quads, paged and single streams, ranges starting off block edges and crossing a
// 2048-token step. Tolerance 2e-6 x |q_h| |key|: fp32 phase factors and summation order.
TEST(RopeCommScores, MatchesScalarReference) {
  testing::ForEachTarget([] {
    struct Case {
      int c, bits, hd, heads;
      bool paged;
    };
    for (const Case& cs :
         {Case{8, 8, 128, 4, true}, Case{4, 8, 128, 4, false}, Case{2, 4, 64, 5, true},
          Case{8, 4, 64, 8, false}, Case{4, 3, 40, 1, true}, Case{6, 8, 36, 2, false}}) {
      RopeParams rp;
      rp.freq_scale = 0.5f;
      rp.freq_factors.assign(static_cast<size_t>(cs.hd / 2), 1.0f);
      rp.freq_factors[0] = 4.0f;
      const int64_t tokens = 2300;
      Head head(cs.c, cs.bits, cs.hd, tokens, cs.paged, cs.c * 100 + cs.bits);
      RopeCommPhases ph(cs.hd, tokens, rp);
      const RopeCommKeys keys{head.view, head.centroids.data(), &ph};
      std::vector<float> q(static_cast<size_t>(cs.heads * cs.hd));
      std::mt19937 rng(11);
      std::normal_distribution<float> nd;
      for (float& x : q) x = nd(rng);
      for (auto [t0, n] : {std::pair<int64_t, int64_t>{0, 300}, {13, 1}, {2000, 300}}) {
        std::vector<float> got(static_cast<size_t>(cs.heads * n)), ref(got.size());
        RopeCommScores(keys, q.data(), cs.heads, t0, n, got.data());
        RopeCommScoresRef(head.view, head.centroids.data(), rp, cs.hd, q.data(), cs.heads, t0, n,
                          ref.data());
        double key_norm = 0;  // bound on every key's norm: sqrt of the sum of max centroid norms
        for (int gi = 0; gi < head.view.groups; ++gi) {
          double mx = 0;
          for (int64_t e = 0; e < (int64_t{1} << cs.bits); ++e) {
            double nn = 0;
            for (int j = 0; j < cs.c; ++j) {
              const double x = head.centroids[(gi * (int64_t{1} << cs.bits) + e) * cs.c + j];
              nn += x * x;
            }
            mx = std::max(mx, nn);
          }
          key_norm += mx;
        }
        key_norm = std::sqrt(key_norm);
        for (int h = 0; h < cs.heads; ++h) {
          double qn = 0;
          for (int j = 0; j < cs.hd; ++j) qn += q[h * cs.hd + j] * q[h * cs.hd + j];
          const double tol = 2e-6 * std::sqrt(qn) * key_norm;
          for (int64_t i = 0; i < n; ++i) {
            ASSERT_NEAR(got[h * n + i], ref[h * n + i], tol)
                << cs.c << "c" << cs.bits << "b hd " << cs.hd << " head " << h << " t " << t0 + i;
          }
        }
      }
    }
  });
}

TEST(RopeCommScores, RefusesNeoxAndOddGroups) {
  RopeParams neox;
  neox.type = RopeType::kNeox;
  testing::ExpectErrorMentioning([&] { RopeCommPhases(64, 100, neox); }, {"NEOX"});
  RopeCommPhases ph(12, 100, RopeParams{});
  Head head(3, 4, 12, 10, false, 1);
  const RopeCommKeys keys{head.view, head.centroids.data(), &ph};
  float q[12] = {}, out[1];
  testing::ExpectErrorMentioning([&] { RopeCommScores(keys, q, 1, 0, 1, out); },
                                 {"whole RoPE pairs"});
  Head pairs(2, 4, 12, 10, false, 1);
  const RopeCommKeys pair_keys{pairs.view, pairs.centroids.data(), &ph};
  testing::ExpectErrorMentioning([&] { RopeCommScores(pair_keys, q, 1, 99, 2, out); },
                                 {"past the 100 positions"});
}

}  // namespace
}  // namespace cqkv
