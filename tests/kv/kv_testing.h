// Test helpers shared by every KV-cache format's tests: cache shapes and the naive
// double-precision causal GQA attention that defines what Attend must compute.
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

#include "kv/kv_cache.h"

namespace cqkv::testing {

inline KvShape TestShape(int n_heads, int n_kv, int hd, int max_tokens, int n_layers = 2) {
  KvShape s;
  s.n_layers = n_layers;
  s.n_heads = n_heads;
  s.n_kv_heads = n_kv;
  s.head_dim = hd;
  s.max_tokens = max_tokens;
  return s;
}

// LLaMA-7B's cache shape: 32 layers of 32 KV heads of 128 channels.
inline KvShape Llama7bShape(int max_tokens) { return TestShape(32, 32, 128, max_tokens, 32); }

// Causal GQA attention in double over explicit K/V rows (n_tokens, kv_dim); q is (nq, q_dim) for
// positions pos0.. .
inline std::vector<double> NaiveAttention(const KvShape& s, const std::vector<float>& q, int64_t nq,
                                          int64_t pos0, const std::vector<float>& k,
                                          const std::vector<float>& v) {
  const int hd = s.head_dim, kvd = s.kv_dim(), qd = s.q_dim();
  std::vector<double> out(static_cast<size_t>(nq * qd), 0.0);
  for (int64_t i = 0; i < nq; ++i) {
    for (int h = 0; h < s.n_heads; ++h) {
      const int kvh = h / (s.n_heads / s.n_kv_heads);
      const int64_t n_ctx = pos0 + i + 1;
      std::vector<double> sc(static_cast<size_t>(n_ctx));
      double mx = -1e300;
      for (int64_t t = 0; t < n_ctx; ++t) {
        double d = 0;
        for (int c = 0; c < hd; ++c) {
          d += double(q[i * qd + h * hd + c]) * k[t * kvd + kvh * hd + c];
        }
        sc[t] = d / std::sqrt(double(hd));
        mx = std::max(mx, sc[t]);
      }
      double sum = 0;
      for (auto& x : sc) sum += (x = std::exp(x - mx));
      for (int64_t t = 0; t < n_ctx; ++t) {
        for (int c = 0; c < hd; ++c) {
          out[i * qd + h * hd + c] += sc[t] / sum * v[t * kvd + kvh * hd + c];
        }
      }
    }
  }
  return out;
}

}  // namespace cqkv::testing
