// Test helpers shared by the int, nf and kivi cache tests (shapes and the naive attention come
// from kv_testing.h): a driver that streams blocks through a quantised cache and
// checks every block's attention against the naive one over the cache's own dequantised rows.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kv/kv_testing.h"
#include "kv/quant_cache.h"
#include "util/error.h"
#include "util/thread_pool.h"

namespace cqkv::testing {

// Every cached K (or V) row of `layer` as attention sees it now: (tokens, kv_dim).
inline std::vector<float> DequantAll(const QuantKvCache& c, int layer, KvPart part) {
  const KvShape& s = c.shape();
  const int64_t n = c.tokens(layer);
  std::vector<float> out(static_cast<size_t>(n * s.kv_dim()));
  for (int64_t t = 0; t < n; ++t) {
    for (int h = 0; h < s.n_kv_heads; ++h) {
      c.DequantHead(layer, part, t, h, out.data() + t * s.kv_dim() + h * s.head_dim);
    }
  }
  return out;
}

// Random K/V/Q rows shaped like real ones: keys carry per-channel offsets and scales (the
// outlier channels per-channel quantisation exists for), values and queries are N(0, 1).
struct RandomKv {
  explicit RandomKv(const KvShape& s, uint32_t seed) : shape(s), rng(seed) {
    std::uniform_real_distribution<float> off(-2.0f, 2.0f), mag(0.5f, 3.0f);
    for (int c = 0; c < s.kv_dim(); ++c) {
      k_offset.push_back(off(rng));
      k_scale.push_back(mag(rng));
    }
  }
  // Fills (n, kv_dim) keys, values and (n, q_dim) queries.
  void Next(int64_t n, std::vector<float>& k, std::vector<float>& v, std::vector<float>& q) {
    k.resize(static_cast<size_t>(n * shape.kv_dim()));
    v.resize(k.size());
    q.resize(static_cast<size_t>(n * shape.q_dim()));
    for (size_t i = 0; i < k.size(); ++i) {
      const size_t c = i % static_cast<size_t>(shape.kv_dim());
      k[i] = k_offset[c] + k_scale[c] * nd(rng);
      v[i] = nd(rng);
    }
    for (auto& x : q) x = 0.5f * nd(rng);
  }

  KvShape shape;
  std::mt19937 rng;
  std::normal_distribution<float> nd;
  std::vector<float> k_offset, k_scale;
};

// Appends `blocks` (sizes, summing to at most max_tokens) to every layer of `cache`; after each
// block, layer 1's attention for the block's queries must equal NaiveAttention over the rows
// DequantAll reports, within 1e-5 relative: both see identical K/V, so only fp32 vs double
// accumulation differs. Returns the attention outputs of all blocks, (total, q_dim).
inline std::vector<float> CheckAttentionMatchesDequantised(QuantKvCache& cache,
                                                           const std::vector<int64_t>& blocks,
                                                           uint32_t seed) {
  const KvShape& s = cache.shape();
  RandomKv gen(s, seed);
  ThreadPool pool(2);
  std::vector<float> all_out;
  int64_t pos = 0;
  for (int64_t block : blocks) {
    std::vector<float> k, v, q;
    gen.Next(block, k, v, q);
    const ConstMat km(k.data(), block, s.kv_dim()), vm(v.data(), block, s.kv_dim());
    for (int l = 0; l < s.n_layers; ++l) cache.Append(l, KvBlock{pos, km, km, vm});
    std::vector<float> out(q.size());
    cache.Attend(1, ConstMat(q.data(), block, s.q_dim()), pos, Mat(out.data(), block, s.q_dim()),
                 pool);
    const auto ref = NaiveAttention(s, q, block, pos, DequantAll(cache, 1, KvPart::kKey),
                                    DequantAll(cache, 1, KvPart::kValue));
    for (size_t i = 0; i < out.size(); ++i) {
      EXPECT_NEAR(out[i], ref[i], 1e-5 * (1 + std::fabs(ref[i])))
          << cache.format() << " block at " << pos << " i=" << i;
      if (::testing::Test::HasFailure()) return all_out;
    }
    all_out.insert(all_out.end(), out.begin(), out.end());
    pos += block;
  }
  EXPECT_EQ(cache.tokens(0), pos);
  return all_out;
}

// Runs f and checks it throws cqkv::Error whose message contains `needle`.
template <typename F>
void ExpectErrorNaming(F&& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one naming " << needle;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

// Appends the same n random tokens to both layers of `stream` one token at a time and of `once`
// as one block: formats that requantise a partial group as rows join must end up storing exactly
// the same rows either way. Compares layer `layer`'s dequantised K and V.
inline void ExpectStreamingEqualsOneBlock(QuantKvCache& stream, QuantKvCache& once, int64_t n,
                                          uint32_t seed, int layer) {
  const KvShape& s = stream.shape();
  RandomKv gen(s, seed);
  std::vector<float> k, v, q;
  gen.Next(n, k, v, q);
  const ConstMat km(k.data(), n, s.kv_dim()), vm(v.data(), n, s.kv_dim());
  for (int l = 0; l < s.n_layers; ++l) once.Append(l, KvBlock{0, km, km, vm});
  for (int l = 0; l < s.n_layers; ++l) {
    for (int64_t t = 0; t < n; ++t) {
      stream.Append(l, KvBlock{t, km.RowRange(t, 1), km.RowRange(t, 1), vm.RowRange(t, 1)});
    }
  }
  for (KvPart p : {KvPart::kKey, KvPart::kValue}) {
    EXPECT_EQ(DequantAll(stream, layer, p), DequantAll(once, layer, p));
  }
}

}  // namespace cqkv::testing
