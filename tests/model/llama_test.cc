#include "model/llama.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "random_model.h"
#include "util/error.h"

namespace cqkv {
namespace {

std::vector<float> RunChunked(const Model& m, const std::vector<int32_t>& ids, int64_t chunk,
                              const std::string& kv, ThreadPool& pool) {
  const int64_t n = static_cast<int64_t>(ids.size()), V = m.config.vocab_size;
  LlamaForward fwd(m, pool);
  auto cache = MakeCacheFor(m, kv, static_cast<int>(n));
  std::vector<float> logits(static_cast<size_t>(n * V));
  for (int64_t p = 0; p < n; p += chunk) {
    const int64_t len = std::min(chunk, n - p);
    fwd.Forward(std::span<const int32_t>(ids.data() + p, static_cast<size_t>(len)), *cache,
                Mat(logits.data() + p * V, len, V));
  }
  return logits;
}

// Prefill (one block, BLAS path), decode (token by token, row-dot path) and mixed chunks must
// give the same logits: only fp32 summation order differs (tolerance 1e-5 of max |logit|).
TEST(LlamaForward, PrefillEqualsDecode) {
  auto m = testing::MakeRandomModel(testing::SmallConfig(), 11);
  ThreadPool pool(2);
  std::vector<int32_t> ids;
  for (int i = 0; i < 40; ++i) ids.push_back((i * 7 + 3) % m->config.vocab_size);
  const auto full = RunChunked(*m, ids, 40, "fp32", pool);
  double max_abs = 0;
  for (float x : full) max_abs = std::max(max_abs, std::fabs(double(x)));
  for (int64_t chunk : {1, 3, 16}) {
    const auto part = RunChunked(*m, ids, chunk, "fp32", pool);
    for (size_t i = 0; i < full.size(); ++i) {
      ASSERT_NEAR(part[i], full[i], 1e-5 * max_abs) << "chunk " << chunk << " i " << i;
    }
  }
  // One thread and two threads agree as well.
  ThreadPool one(1);
  const auto single = RunChunked(*m, ids, 40, "fp32", one);
  for (size_t i = 0; i < full.size(); ++i) ASSERT_NEAR(single[i], full[i], 1e-5 * max_abs);
}

TEST(LlamaForward, LastOnlyLogitsMatchFullRun) {
  auto m = testing::MakeRandomModel(testing::SmallConfig(), 12);
  ThreadPool pool(2);
  const std::vector<int32_t> ids{1, 5, 9, 2, 7, 7, 3};
  const auto full = RunChunked(*m, ids, 7, "fp32", pool);
  LlamaForward fwd(*m, pool);
  auto cache = MakeCacheFor(*m, "fp32", 16);
  const int64_t V = m->config.vocab_size;
  std::vector<float> last(static_cast<size_t>(V));
  fwd.Forward(ids, *cache, Mat(last.data(), 1, V));
  for (int64_t j = 0; j < V; ++j) EXPECT_NEAR(last[j], full[6 * V + j], 1e-5);
}

TEST(LlamaForward, Fp16CacheIsCloseToFp32) {
  auto m = testing::MakeRandomModel(testing::SmallConfig(), 13);
  ThreadPool pool(2);
  std::vector<int32_t> ids;
  for (int i = 0; i < 30; ++i) ids.push_back((i * 13 + 1) % m->config.vocab_size);
  const auto a = RunChunked(*m, ids, 30, "fp32", pool);
  const auto b = RunChunked(*m, ids, 30, "fp16", pool);
  double max_diff = 0, max_abs = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    max_diff = std::max(max_diff, std::fabs(double(a[i]) - b[i]));
    max_abs = std::max(max_abs, std::fabs(double(a[i])));
  }
  // fp16 keeps 11 significant bits: relative error ~5e-4 per element, well under 1e-2 overall.
  EXPECT_LT(max_diff / max_abs, 1e-2);
  EXPECT_GT(max_diff, 0.0);  // and the format really rounds
}

TEST(LlamaForward, BadTokenAndFullCacheAreErrors) {
  auto m = testing::MakeRandomModel(testing::SmallConfig(), 14);
  ThreadPool pool(1);
  LlamaForward fwd(*m, pool);
  auto cache = MakeCacheFor(*m, "fp32", 2);
  std::vector<float> logits(static_cast<size_t>(m->config.vocab_size));
  const std::vector<int32_t> bad{m->config.vocab_size};
  EXPECT_THROW(fwd.Forward(bad, *cache, Mat(logits.data(), 1, m->config.vocab_size)), Error);
  const std::vector<int32_t> three{1, 2, 3};
  EXPECT_THROW(fwd.Forward(three, *cache, Mat(logits.data(), 1, m->config.vocab_size)), Error);
}

}  // namespace
}  // namespace cqkv
