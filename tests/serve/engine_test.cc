#include "cqkv/engine.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "kv/cq_cache.h"
#include "loader/loader.h"
#include "model/fingerprint.h"
#include "model/kv_shape.h"
#include "model/llama.h"
#include "model/model.h"
#include "test_util.h"

namespace cqkv {
namespace {

constexpr const char* kStories = "models/stories260K/model.bin";

// What one request produced, collected from its callbacks.
struct Outcome {
  std::vector<int32_t> tokens;
  std::string text;
  FinishReason finish = FinishReason::kNone;
  int final_events = 0;
  int completion_tokens = 0;
};

struct Collector {
  std::mutex mu;
  std::map<int64_t, Outcome> by_id;
  TokenCallback For() {
    return [this](const TokenEvent& e) {
      std::lock_guard<std::mutex> lock(mu);
      Outcome& o = by_id[e.request_id];
      if (e.token >= 0) o.tokens.push_back(e.token);
      o.text += e.text;
      if (e.done) {
        o.finish = e.finish;
        ++o.final_events;
        o.completion_tokens = e.completion_tokens;
      }
    };
  }
};

EngineConfig StoriesConfig(const std::string& kv = "fp32") {
  EngineConfig c;
  c.model_path = testing::SharedPath(kStories);
  c.kv = kv;
  c.threads = 2;
  c.kv_memory_bytes = int64_t{64} << 20;
  return c;
}

Request Greedy(const std::string& prompt, int max_tokens, Collector& col) {
  Request r;
  r.prompt = prompt;
  r.sampling.temperature = 0.0f;
  r.sampling.max_tokens = max_tokens;
  r.on_token = col.For();
  return r;
}

// Greedy decoding written directly on LlamaForward (no engine, no batching), the reference the
// engine's batched, paged, chunked path must reproduce token for token.
std::vector<int32_t> DirectGreedy(const std::string& prompt, int n, const std::string& kv) {
  auto model = LoadModel(testing::SharedPath(kStories));
  ThreadPool pool(2);
  LlamaForward fwd(*model, pool);
  auto ids = model->tok().Encode(prompt, true);
  auto cache = MakeCacheFor(*model, kv, static_cast<int>(ids.size()) + n);
  const int64_t V = model->config.vocab_size;
  std::vector<float> logits(static_cast<size_t>(V));
  fwd.Forward(ids, *cache, Mat(logits.data(), 1, V));
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) {
    const int32_t next =
        static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    if (next == model->tok().eos()) break;
    out.push_back(next);
    fwd.Forward(std::span<const int32_t>(&next, 1), *cache, Mat(logits.data(), 1, V));
  }
  return out;
}

const std::vector<std::string> kPrompts = {"Once upon a time",
                                           "The little dog",
                                           "Lily wanted to",
                                           "One day, a big",
                                           "Tom and Sue went to the park. They",
                                           "The sun was",
                                           "She said",
                                           "A cat"};

TEST(Engine, GreedyBatchEqualsDirectDecoding) {
  CQKV_REQUIRE_SHARED(kStories);
  // The mixed spec: a composite cache (kv/mixed_cache.h) with a K/V split layer, paged by the
  // engine.
  for (const std::string kv : {"fp32", "fp16", "K=int4-token,V=fp16;fp16@last1"}) {
    auto engine = Engine::Create(StoriesConfig(kv));
    Collector col;
    std::vector<int64_t> ids;
    for (const auto& p : kPrompts) ids.push_back(engine->Submit(Greedy(p, 24, col)));
    engine->RunUntilIdle();
    for (size_t i = 0; i < kPrompts.size(); ++i) {
      const Outcome& o = col.by_id[ids[i]];
      EXPECT_EQ(o.final_events, 1);
      EXPECT_EQ(o.tokens, DirectGreedy(kPrompts[i], 24, kv)) << kv << ": " << kPrompts[i];
      EXPECT_EQ(o.text, engine->Detokenize(o.tokens));
    }
    const EngineStats st = engine->Stats();
    EXPECT_EQ(st.pages_used, 0);
    EXPECT_EQ(st.running, 0);
    EXPECT_EQ(st.requests_finished, static_cast<int64_t>(kPrompts.size()));
  }
}

// A budget of 3 pages for 5 sequences that each grow past one page: admission waits and running
// sequences are preempted and recomputed, yet every output equals the unconstrained run.
TEST(Engine, TightBudgetPreemptsAndStillMatches) {
  CQKV_REQUIRE_SHARED(kStories);
  EngineConfig big = StoriesConfig();
  auto probe = Engine::Create(big);
  const int64_t page = probe->Stats().page_bytes;
  EngineConfig small = big;
  small.kv_memory_bytes = 3 * page;
  small.max_batch_tokens = 64;  // chunked prefill of the longer prompts
  auto engine = Engine::Create(small);
  EXPECT_EQ(engine->Stats().pages_total, 3);
  Collector col, ref;
  std::vector<int64_t> ids, ref_ids;
  std::string long_prompt;
  for (int i = 0; i < 30; ++i) long_prompt += "Tim had a red ball. ";
  std::vector<std::string> prompts(kPrompts.begin(), kPrompts.begin() + 4);
  prompts.push_back(long_prompt);
  for (const auto& p : prompts) {
    ids.push_back(engine->Submit(Greedy(p, 270, col)));
    ref_ids.push_back(probe->Submit(Greedy(p, 270, ref)));
  }
  engine->RunUntilIdle();
  probe->RunUntilIdle();
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(col.by_id[ids[i]].tokens, ref.by_id[ref_ids[i]].tokens) << prompts[i];
    EXPECT_EQ(col.by_id[ids[i]].final_events, 1);
  }
  EXPECT_GT(engine->Stats().preemptions, 0);
  EXPECT_EQ(engine->Stats().pages_used, 0);
}

TEST(Engine, CancelFreesPagesAndEndsOnce) {
  CQKV_REQUIRE_SHARED(kStories);
  auto engine = Engine::Create(StoriesConfig());
  Collector col;
  const int64_t a = engine->Submit(Greedy("Once upon a time", 200, col));
  const int64_t b = engine->Submit(Greedy("The little dog", 5, col));
  for (int i = 0; i < 3; ++i) engine->Step();
  EXPECT_GT(engine->Stats().pages_used, 0);
  engine->Cancel(a);
  engine->RunUntilIdle();
  EXPECT_EQ(col.by_id[a].finish, FinishReason::kCancelled);
  EXPECT_EQ(col.by_id[a].final_events, 1);
  EXPECT_LT(col.by_id[a].tokens.size(), 200u);
  EXPECT_EQ(col.by_id[b].finish, FinishReason::kLength);
  EXPECT_EQ(col.by_id[b].completion_tokens, 5);
  EXPECT_EQ(engine->Stats().pages_used, 0);
  engine->Cancel(12345);  // unknown ids are ignored
  EXPECT_FALSE(engine->Step());
}

TEST(Engine, StopStringsEndTheCompletionBeforeThem) {
  CQKV_REQUIRE_SHARED(kStories);
  auto engine = Engine::Create(StoriesConfig());
  Collector free_run, stopped;
  const int64_t a = engine->Submit(Greedy("Once upon a time", 40, free_run));
  engine->RunUntilIdle();
  const std::string full = free_run.by_id[a].text;
  ASSERT_GT(full.size(), 20u);
  // Stop at a word from the middle of the free run's text.
  const std::string stop = full.substr(full.size() / 2, 4);
  Request r = Greedy("Once upon a time", 40, stopped);
  r.sampling.stop = {stop};
  const int64_t b = engine->Submit(std::move(r));
  engine->RunUntilIdle();
  const Outcome& o = stopped.by_id[b];
  EXPECT_EQ(o.finish, FinishReason::kStop);
  EXPECT_EQ(o.text, full.substr(0, full.find(stop)));
}

TEST(Engine, RejectsBadRequestsWithCodes) {
  CQKV_REQUIRE_SHARED(kStories);
  EngineConfig c = StoriesConfig();
  c.max_queue = 2;
  auto engine = Engine::Create(c);
  Collector col;
  auto code_of = [&](Request r) {
    try {
      engine->Submit(std::move(r));
    } catch (const Error& e) {
      return e.code();
    }
    return ErrorCode::kInternal;
  };
  Request empty = Greedy("", 4, col);
  empty.prompt_tokens = {};
  std::string huge;
  for (int i = 0; i < 400; ++i) huge += "dog cat ";
  EXPECT_EQ(code_of(Greedy(huge, 4, col)), ErrorCode::kInvalidArgument);  // > 512-token context
  Request bad_temp = Greedy("hi", 4, col);
  bad_temp.sampling.temperature = -1;
  EXPECT_EQ(code_of(bad_temp), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of(Greedy("hi", 0, col)), ErrorCode::kInvalidArgument);
  engine->Submit(Greedy("a", 2, col));
  engine->Submit(Greedy("b", 2, col));
  EXPECT_EQ(code_of(Greedy("c", 2, col)), ErrorCode::kResourceExhausted);
  engine->RunUntilIdle();
  engine->Stop();
  EXPECT_EQ(code_of(Greedy("d", 2, col)), ErrorCode::kUnavailable);
}

// A CQ cache's codebooks are charged to the budget once: a prompt that fits the pages left over
// runs, one that would fit only if the codebooks were free is refused at once (it could never be
// admitted) instead of waiting in the queue.
TEST(Engine, PromptsThatCannotFitBesideTheCodebooksAreRefused) {
  CQKV_REQUIRE_SHARED(kStories);
  auto model = LoadModel(testing::SharedPath(kStories));
  KvShape shape = KvShapeFor(model->config, model->config.max_seq_len);
  shape.model_fingerprint = ModelFingerprint(*model);
  const std::string path = ::testing::TempDir() + "/engine_test_2c8b.cqcb";
  SaveCodebooks(RandomCodebooks(shape, CqConfig{2, 8}, 7), path);
  EngineConfig c = StoriesConfig("cq:" + path);
  auto probe = Engine::Create(c);
  const int64_t page = probe->Stats().page_bytes;
  const int64_t shared = probe->Stats().kv_bytes_used;  // the codebooks, before any request
  ASSERT_GT(shared, page);                              // so they take whole pages of the budget
  // Budget: the codebooks' pages plus one page of tokens.
  c.kv_memory_bytes = ((shared + page - 1) / page + 1) * page;
  auto engine = Engine::Create(c);
  Collector col;
  const int64_t ok = engine->Submit(Greedy("Once upon a time", 8, col));
  std::string two_pages;
  for (int i = 0; i < 30; ++i) two_pages += "Tim had a red ball. ";  // 301 tokens of 512
  try {
    engine->Submit(Greedy(two_pages, 8, col));
    ADD_FAILURE() << "a prompt needing two pages was queued beside one free page";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
    EXPECT_NE(std::string(e.what()).find("KV pages"), std::string::npos) << e.what();
  }
  engine->RunUntilIdle();
  EXPECT_EQ(col.by_id[ok].completion_tokens, 8);
}

TEST(Engine, BackgroundThreadDrainsOnStop) {
  CQKV_REQUIRE_SHARED(kStories);
  auto engine = Engine::Create(StoriesConfig("fp16"));
  engine->Start();
  Collector col;
  std::vector<int64_t> ids;
  for (const auto& p : kPrompts) ids.push_back(engine->Submit(Greedy(p, 16, col)));
  engine->Stop(std::chrono::seconds(30));
  for (int64_t id : ids) {
    EXPECT_EQ(col.by_id[id].final_events, 1);
    EXPECT_NE(col.by_id[id].finish, FinishReason::kCancelled);
  }
  EXPECT_EQ(engine->Stats().pages_used, 0);
}

TEST(Engine, StopWithoutDrainCancelsEverything) {
  CQKV_REQUIRE_SHARED(kStories);
  auto engine = Engine::Create(StoriesConfig());
  Collector col;
  const int64_t a = engine->Submit(Greedy("Once upon a time", 300, col));
  engine->Step();
  engine->Stop();
  EXPECT_EQ(col.by_id[a].finish, FinishReason::kCancelled);
  EXPECT_EQ(engine->Stats().pages_used, 0);
}

// Chat prompts get real special tokens: a template or message spelling </s> yields EOS (id 2 in
// the stories260K vocabulary), while plain Tokenize keeps such text as text.
TEST(Engine, TokenizeChatParsesSpecialTokens) {
  CQKV_REQUIRE_SHARED(kStories);
  auto engine = Engine::Create(StoriesConfig());
  const std::vector<ChatMessage> chat = {{"user", "Tell a story"}};
  EXPECT_EQ(engine->TokenizeChat(chat), engine->Tokenize(engine->ApplyChatTemplate(chat), true));
  const std::vector<ChatMessage> marked = {{"user", "Tell a story</s>"}};
  const std::vector<int32_t> special = engine->TokenizeChat(marked);
  EXPECT_EQ(special.front(), 1);
  EXPECT_EQ(std::count(special.begin(), special.end(), 2), 1);
  const std::vector<int32_t> plain = engine->Tokenize(engine->ApplyChatTemplate(marked), true);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 2), 0);
}

}  // namespace
}  // namespace cqkv
