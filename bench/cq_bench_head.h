// The random KV head the CQ kernel benchmarks time (cq_fused_bench, additive_values_bench): codes,
// key/value tables, additive bases and residual (two-stage) bases of one KV head with 4 query
// heads, head dim 128, 4096 cached tokens, all drawn from one fixed seed so every benchmark reads
// the same head.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "kernels/attn_cq.h"

namespace cqkv::bench {

constexpr int64_t kTokens = 4096;
constexpr int kHeads = 4, kHeadDim = 128;

struct Head {
  int c, bits, groups;
  std::vector<uint8_t> k_codes, v_codes;
  std::vector<float> k_table, v_table, basis, q, m, l, acc;
  std::vector<float> residual;  // (groups, 32, c): stages A and B of 16 rows (attn_cq_nibble.h)
  cqkv::CqHeadView view;        // keys read as token-major or fast-scan: random bytes either way
  Head(int c_, int bits_) : c(c_), bits(bits_), groups(kHeadDim / c_) {
    std::mt19937 rng(1);
    std::normal_distribution<float> nd;
    k_codes.resize(static_cast<size_t>(kTokens * groups * bits / 8 + 4));
    v_codes.resize(k_codes.size());
    for (auto& b : k_codes) b = static_cast<uint8_t>(rng());
    for (auto& b : v_codes) b = static_cast<uint8_t>(rng());
    k_table.resize(static_cast<size_t>(groups) * c << bits);
    v_table.resize(k_table.size());
    basis.resize(static_cast<size_t>(groups) * (bits + 1) * c);
    q.resize(kHeads * kHeadDim);
    for (auto* v : {&k_table, &v_table, &basis, &q}) {
      for (auto& x : *v) x = 0.1f * nd(rng);
    }
    residual.resize(static_cast<size_t>(groups) * 32 * c);
    for (auto& x : residual) x = 0.1f * nd(rng);
    m.resize(kHeads);
    l.resize(kHeads);
    acc.resize(kHeads * kHeadDim);
    view.k_codes = k_codes.data();
    view.v_codes = v_codes.data();
    view.n_groups = groups;
    view.groups = groups;
    view.c = c;
    view.bits = bits;
    view.k_table = k_table.data();
    view.v_table = v_table.data();
  }
  cqkv::AttnState State() {
    const cqkv::AttnState s{m.data(), l.data(), acc.data(), kHeads, kHeadDim};
    cqkv::ResetAttnState(s);
    return s;
  }
};

}  // namespace cqkv::bench
