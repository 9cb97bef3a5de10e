#include "eval/zeroshot_loglik.h"

#include <gtest/gtest.h>

#include <cmath>

#include "loader/loader.h"
#include "test_util.h"

namespace cqkv {
namespace {

const char* kModel = "models/stories260K/model.bin";

// log P(tokens[first..] | prefix) with one cache of `kv`, the context and the continuation run
// in two Forward calls, as the scorer's shared prefix and replay do.
double DirectLoglik(const Model& m, const std::string& kv, const std::vector<int32_t>& tokens,
                    int64_t split, int64_t first) {
  ThreadPool pool(1);
  LlamaForward fwd(m, pool);
  auto cache = MakeCacheFor(m, kv, m.config.max_seq_len);
  const int64_t V = m.config.vocab_size, n = static_cast<int64_t>(tokens.size()) - 1;
  std::vector<float> logits(static_cast<size_t>(n * V));
  fwd.Forward(std::span(tokens.data(), split), *cache, Mat(logits.data(), split, V));
  fwd.Forward(std::span(tokens.data() + split, n - split), *cache,
              Mat(logits.data() + split * V, n - split, V));
  double ll = 0;
  for (int64_t j = first; j <= n; ++j) {
    const float* row = logits.data() + (j - 1) * V;
    double mx = row[0], sum = 0;
    for (int64_t i = 0; i < V; ++i) mx = std::max(mx, double(row[i]));
    for (int64_t i = 0; i < V; ++i) sum += std::exp(row[i] - mx);
    ll += row[tokens[j]] - mx - std::log(sum);
  }
  return ll;
}

// The scorer (shared prefix, replayed K/V, all choices in one batched step) gives the same
// log-likelihoods as running each sequence through its own cache, for every kind of format.
TEST(ZeroShotLoglik, SharedPrefixMatchesDirectRunsForEveryFormat) {
  CQKV_REQUIRE_SHARED(kModel);
  auto m = LoadModel(testing::SharedPath(kModel), "");
  ZsItem item;
  item.gold = 0;
  for (const char* c : {" a big red ball.", " the cat.", " a dog ran to the park and played."}) {
    item.requests.push_back(ZsRequest{"Once upon a time, Lily saw ", c, 4});
  }
  for (const std::string kv : {"fp32", "fp16", "int8-token", "int4-channel:g32", "kivi2:g8:r4"}) {
    ThreadPool pool(2);
    ZsModelScorer scorer(*m, kv, true, pool);
    const auto lls = scorer.Score(item);
    ASSERT_EQ(lls.size(), 3u);
    const auto& seqs = scorer.last_tokens();
    // The context's trailing space moved to the continuation, so all share the context tokens.
    const int64_t ctx_len =
        static_cast<int64_t>(m->tok().Encode("Once upon a time, Lily saw", true).size());
    for (size_t i = 0; i < 3; ++i) {
      EXPECT_EQ(seqs[i].first_scored, ctx_len) << kv;
      const double ref = DirectLoglik(*m, kv, seqs[i].tokens, ctx_len, seqs[i].first_scored);
      // fp32 rounding of the batched matmul (rows grouped differently) only.
      EXPECT_NEAR(lls[i].loglik, ref, 2e-3) << kv << " choice " << i;
      EXPECT_EQ(lls[i].tokens, static_cast<int64_t>(seqs[i].tokens.size()) - ctx_len);
    }
    EXPECT_LT(scorer.tokens_forwarded(), scorer.tokens_unshared()) << kv;
  }
}

// Sequences longer than the model's context lose their oldest tokens, as the harness's.
TEST(ZeroShotLoglik, LongContextsAreCutOnTheLeft) {
  CQKV_REQUIRE_SHARED(kModel);
  auto m = LoadModel(testing::SharedPath(kModel), "");
  std::string long_ctx;
  for (int i = 0; i < 200; ++i) long_ctx += "The dog ran. ";
  ZsItem item;
  item.requests.push_back(ZsRequest{long_ctx, " The cat sat.", 1});
  ThreadPool pool(2);
  ZsModelScorer scorer(*m, "fp32", true, pool);
  const auto lls = scorer.Score(item);
  const auto& s = scorer.last_tokens()[0];
  EXPECT_EQ(static_cast<int64_t>(s.tokens.size()), m->config.max_seq_len + 1);
  EXPECT_TRUE(std::isfinite(lls[0].loglik));
  EXPECT_LT(lls[0].loglik, 0);
}

}  // namespace
}  // namespace cqkv
