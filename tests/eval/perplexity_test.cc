#include "eval/perplexity.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <span>
#include <vector>

#include "model/llama.h"
#include "random_model.h"
#include "util/error.h"

namespace cqkv {
namespace {

// A model whose classifier is all zeros predicts the uniform distribution, so perplexity is
// exactly the vocabulary size whatever the text.
TEST(Perplexity, UniformModelHasPerplexityEqualToVocab) {
  auto m = testing::MakeRandomModel(testing::SmallConfig(), 21);
  auto* out = const_cast<float*>(static_cast<const float*>(m->weights.output.data));
  std::memset(out, 0, sizeof(float) * m->config.vocab_size * m->config.dim);
  std::vector<int32_t> tokens(100);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>((i * 17) % 50);
  ThreadPool pool(2);
  PerplexityOptions opt;
  opt.ctx = 16;
  opt.batch = 5;
  const auto r = EvalPerplexity(*m, tokens, opt, pool);
  EXPECT_EQ(r.windows, 6);      // 100 / 16, last partial window dropped
  EXPECT_EQ(r.tokens, 6 * 15);  // ctx - 1 predictions per window
  EXPECT_NEAR(r.ppl, 50.0, 1e-9 * 50);
}

TEST(Perplexity, KlAgainstItselfIsZeroAndWindowsAreCapped) {
  auto m = testing::MakeRandomModel(testing::SmallConfig(), 22, 0.3f);
  std::vector<int32_t> tokens(200);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>((i * 7) % 50);
  ThreadPool pool(2);
  PerplexityOptions opt;
  opt.ctx = 32;
  opt.kl_base = "fp32";
  opt.max_windows = 2;
  const auto r = EvalPerplexity(*m, tokens, opt, pool);
  EXPECT_EQ(r.windows, 2);
  EXPECT_TRUE(r.has_kl);
  EXPECT_NEAR(r.kld, 0.0, 1e-12);
  EXPECT_DOUBLE_EQ(r.top1_agree, 1.0);
  EXPECT_NEAR(r.base_ppl, r.ppl, 1e-9 * r.ppl);
  // fp16 differs a little: KL small but positive.
  opt.kv = "fp16";
  const auto h = EvalPerplexity(*m, tokens, opt, pool);
  EXPECT_GT(h.kld, 0.0);
  EXPECT_LT(h.kld, 1e-3);
}

// The batch size only changes how windows are chunked, never the result.
TEST(Perplexity, BatchSizeDoesNotChangeResult) {
  auto m = testing::MakeRandomModel(testing::SmallConfig(), 23, 0.3f);
  std::vector<int32_t> tokens(130);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>((i * 11 + 5) % 50);
  ThreadPool pool(2);
  PerplexityOptions opt;
  opt.ctx = 64;
  const auto a = EvalPerplexity(*m, tokens, opt, pool);
  opt.batch = 1;
  const auto b = EvalPerplexity(*m, tokens, opt, pool);
  EXPECT_NEAR(a.nll, b.nll, 1e-5 * std::fabs(a.nll));
}

// llama.cpp's protocol, recomputed here from the forward pass: chunk w is tokens
// [w ctx, (w + 1) ctx) with its first replaced by BOS, and only the predictions made at positions
// ctx/2 .. ctx-2 (of tokens ctx/2+1 .. ctx-1) count.
TEST(Perplexity, LlamaCppProtocolScoresSecondHalfAfterBos) {
  auto m = testing::MakeRandomModel(testing::SmallConfig(), 25, 0.3f);
  const int ctx = 20, bos = 1;
  std::vector<int32_t> tokens(3 * ctx + 7);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>((i * 13 + 2) % 50);
  ThreadPool pool(2);
  PerplexityOptions opt;
  opt.protocol = PplProtocol::kLlamaCpp;
  opt.chunk_bos = bos;
  opt.ctx = ctx;
  opt.batch = 7;  // chunks cross forward calls
  const auto r = EvalPerplexity(*m, tokens, opt, pool);
  EXPECT_EQ(r.windows, 3);
  EXPECT_EQ(r.tokens, 3 * (ctx - ctx / 2 - 1));

  const int64_t V = m->config.vocab_size;
  double nll = 0;
  LlamaForward fwd(*m, pool);
  for (int w = 0; w < 3; ++w) {
    std::vector<int32_t> chunk(tokens.begin() + w * ctx, tokens.begin() + (w + 1) * ctx);
    chunk[0] = bos;
    auto cache = MakeCacheFor(*m, "fp32", ctx);
    std::vector<float> logits(static_cast<size_t>((ctx - 1) * V));
    fwd.Forward(std::span<const int32_t>(chunk.data(), ctx - 1), *cache,
                Mat(logits.data(), ctx - 1, V));
    for (int p = ctx / 2; p <= ctx - 2; ++p) {
      const float* z = logits.data() + p * V;
      double mx = z[0], sum = 0;
      for (int64_t j = 0; j < V; ++j) mx = std::max(mx, double(z[j]));
      for (int64_t j = 0; j < V; ++j) sum += std::exp(z[j] - mx);
      nll -= z[chunk[p + 1]] - mx - std::log(sum);
    }
  }
  // One forward call per chunk here vs batches of 7 there: fp32 reordering only.
  EXPECT_NEAR(r.nll, nll / r.tokens, 1e-5 * std::fabs(r.nll));

  // Without BOS replacement the first-token change must show (the protocol is not a no-op).
  opt.chunk_bos = -1;
  EXPECT_GT(std::fabs(EvalPerplexity(*m, tokens, opt, pool).nll - r.nll), 1e-6);
  // llama.cpp needs two chunks.
  std::vector<int32_t> short_text(tokens.begin(), tokens.begin() + 2 * ctx - 1);
  EXPECT_THROW(EvalPerplexity(*m, short_text, opt, pool), Error);
}

TEST(Perplexity, ContextBeyondModelAndTooLittleDataAreErrors) {
  auto m = testing::MakeRandomModel(testing::SmallConfig(), 24);
  ThreadPool pool(1);
  PerplexityOptions opt;
  opt.ctx = 129;  // model context is 128
  std::vector<int32_t> tokens(300, 1);
  EXPECT_THROW(EvalPerplexity(*m, tokens, opt, pool), Error);
  opt.ctx = 64;
  std::vector<int32_t> few(10, 1);
  EXPECT_THROW(EvalPerplexity(*m, few, opt, pool), Error);
}

}  // namespace
}  // namespace cqkv
