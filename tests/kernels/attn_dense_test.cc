#include "kernels/attn_dense.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <type_traits>
#include <vector>

#include "util/fp16.h"

namespace cqkv {
namespace {

// An owning softmax state of `heads` x `hd`.
struct State {
  std::vector<float> m, l, acc;
  State(int heads, int hd) : m(heads), l(heads), acc(static_cast<size_t>(heads) * hd) {
    ResetAttnState(view(hd));
  }
  AttnState view(int hd) {
    return {m.data(), l.data(), acc.data(), static_cast<int>(m.size()), hd};
  }
  // Normalised output acc / l.
  std::vector<double> Out(int hd) const {
    std::vector<double> o(acc.size());
    for (size_t i = 0; i < o.size(); ++i) o[i] = acc[i] / l[i / hd];
    return o;
  }
};

// The SIMD kernel reorders fp32 sums (dot products, block-wise softmax); outputs are convex
// combinations of N(0,1) rows, so a 1e-5 absolute bound on the normalised output is relative.
template <typename T>
void CheckDense(int G, int hd, int64_t n, int64_t stride_extra) {
  std::mt19937 rng(G * 1000 + hd + n);
  std::normal_distribution<float> nd;
  const int64_t stride = hd + stride_extra;
  std::vector<T> k(static_cast<size_t>(n * stride)), v(k.size());
  std::vector<float> q(static_cast<size_t>(G) * hd);
  for (auto& x : q) x = nd(rng) * 0.3f;
  for (size_t i = 0; i < k.size(); ++i) {
    if constexpr (std::is_same_v<T, float>) {
      k[i] = nd(rng);
      v[i] = nd(rng);
    } else {
      k[i] = F32ToF16(nd(rng));
      v[i] = F32ToF16(nd(rng));
    }
  }
  // Split at an odd point so the second call continues a non-empty state.
  const int64_t split = n / 3;
  State a(G, hd), r(G, hd);
  for (auto [t0, t1] : {std::pair<int64_t, int64_t>{0, split}, {split, n}}) {
    if constexpr (std::is_same_v<T, float>) {
      DenseAttendF32(q.data(), k.data() + t0 * stride, v.data() + t0 * stride, stride, t1 - t0,
                     a.view(hd));
      DenseAttendF32Ref(q.data(), k.data() + t0 * stride, v.data() + t0 * stride, stride, t1 - t0,
                        r.view(hd));
    } else {
      DenseAttendF16(q.data(), k.data() + t0 * stride, v.data() + t0 * stride, stride, t1 - t0,
                     a.view(hd));
      DenseAttendF16Ref(q.data(), k.data() + t0 * stride, v.data() + t0 * stride, stride, t1 - t0,
                        r.view(hd));
    }
  }
  const auto oa = a.Out(hd), or_ = r.Out(hd);
  for (size_t i = 0; i < oa.size(); ++i) {
    ASSERT_NEAR(oa[i], or_[i], 1e-5) << "G=" << G << " hd=" << hd << " n=" << n << " i=" << i;
  }
}

TEST(AttnDense, MatchesReference) {
  for (int G : {1, 3, 4, 8, 12}) {
    for (int hd : {8, 20, 64, 128}) {
      for (int64_t n : {1, 2, 63, 64, 65, 300}) {
        CheckDense<float>(G, hd, n, 0);
        CheckDense<uint16_t>(G, hd, n, 3 * hd);
      }
    }
  }
}

// In-register decode of uniformly quantised rows against DenseAttendF32Ref on the same rows
// dequantised by the scalar formula min + code * scale: codes and fp16 parameters random, rows
// packed as TokenGroupCodec (token_group 0: a pair per `group` channels of each row) or
// ChannelGroupCodec (a pair per channel per token_group rows) store them, 64 slack bytes after
// the last row.
void CheckInt(int bits, int group, int G, int hd, int64_t n, int token_group = 0) {
  std::mt19937 rng(bits * 100 + group + G * 7 + hd + n + token_group);
  std::uniform_int_distribution<uint32_t> code_dist(0, (1u << bits) - 1);
  std::uniform_real_distribution<float> ud(-1.0f, 1.0f);
  const bool per_channel = token_group > 0;
  if (per_channel) group = 1;  // a pair per channel
  const int64_t code_bytes = (int64_t{hd} * bits + 7) / 8, ppr = 2 * (hd / group);
  // Rows of parameters: one per row, or one per token group.
  const int64_t param_rows = per_channel ? (n + token_group - 1) / token_group : n;
  std::vector<uint8_t> codes[2];
  std::vector<uint16_t> params[2];
  std::vector<float> rows[2];  // dequantised (n, hd)
  for (int part = 0; part < 2; ++part) {
    codes[part].assign(static_cast<size_t>(n * code_bytes + 64), 0);
    params[part].resize(static_cast<size_t>(param_rows * ppr));
    rows[part].resize(static_cast<size_t>(n * hd));
    for (int64_t pr = 0; pr < param_rows; ++pr) {
      for (int g = 0; g < hd / group; ++g) {
        params[part][pr * ppr + 2 * g] = F32ToF16(0.5f * std::fabs(ud(rng)) / (1 << bits));
        params[part][pr * ppr + 2 * g + 1] = F32ToF16(ud(rng));
      }
    }
    for (int64_t t = 0; t < n; ++t) {
      const int64_t pr = per_channel ? t / token_group : t;
      for (int c = 0; c < hd; ++c) {
        const uint32_t code = code_dist(rng);
        const int64_t bit = int64_t{c} * bits;
        codes[part][t * code_bytes + bit / 8] |= static_cast<uint8_t>(code << (bit % 8));
        const uint16_t* g = &params[part][pr * ppr + 2 * (c / group)];
        rows[part][t * hd + c] = F16ToF32(g[1]) + static_cast<float>(code) * F16ToF32(g[0]);
      }
    }
  }
  std::vector<float> q(static_cast<size_t>(G) * hd);
  for (float& x : q) x = 3.0f * ud(rng);
  State a(G, hd), r(G, hd);
  const IntRowsView kv = {codes[0].data(), params[0].data(), code_bytes, ppr, bits,
                          group,           token_group};
  const IntRowsView vv = {codes[1].data(), params[1].data(), code_bytes, ppr, bits,
                          group,           token_group};
  IntAttend(q.data(), kv, vv, n, a.view(hd));
  DenseAttendF32Ref(q.data(), rows[0].data(), rows[1].data(), hd, n, r.view(hd));
  const auto oa = a.Out(hd), orf = r.Out(hd);
  for (size_t i = 0; i < oa.size(); ++i) {
    ASSERT_NEAR(oa[i], orf[i], 1e-5)
        << "bits " << bits << " group " << group << " G " << G << " hd " << hd << " n " << n
        << " token group " << token_group << " i " << i;
  }
}

TEST(AttnDense, QuantisedRowsDecodedInRegisters) {
  for (int bits : {1, 2, 4, 8}) {
    for (int hd : {64, 128}) {
      for (int group : {16, 32, hd}) {
        for (int G : {1, 4, 5}) {
          for (int64_t n : {1, 63, 200}) CheckInt(bits, group, G, hd, n);
        }
      }
      // Per-channel pairs over token groups, blocks straddling groups and partial last groups.
      for (int token_group : {32, 48, 128}) {
        for (int64_t n : {1, 100, 300}) CheckInt(bits, 0, 4, hd, n, token_group);
      }
    }
  }
}

TEST(AttnDense, MergeOfSplitsEqualsWhole) {
  const int G = 4, hd = 64;
  const int64_t n = 500;
  std::mt19937 rng(5);
  std::normal_distribution<float> nd;
  std::vector<float> k(n * hd), v(n * hd), q(G * hd);
  for (auto& x : k) x = nd(rng);
  for (auto& x : v) x = nd(rng);
  for (auto& x : q) x = nd(rng) * 0.3f;
  State whole(G, hd), a(G, hd), b(G, hd);
  DenseAttendF32(q.data(), k.data(), v.data(), hd, n, whole.view(hd));
  DenseAttendF32(q.data(), k.data(), v.data(), hd, 123, a.view(hd));
  DenseAttendF32(q.data(), k.data() + 123 * hd, v.data() + 123 * hd, hd, n - 123, b.view(hd));
  MergeAttnState(a.view(hd), b.view(hd));
  State empty(G, hd);
  MergeAttnState(a.view(hd), empty.view(hd));  // merging an empty state changes nothing
  const auto ow = whole.Out(hd), om = a.Out(hd);
  for (size_t i = 0; i < ow.size(); ++i) ASSERT_NEAR(ow[i], om[i], 1e-5) << i;
}

}  // namespace
}  // namespace cqkv
