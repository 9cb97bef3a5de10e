#include "eval/perplexity.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

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
