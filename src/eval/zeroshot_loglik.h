// Log-likelihoods of zero-shot requests under a model with a chosen KV cache, tokenized as
// lm-evaluation-harness does: trailing spaces of the context move to the continuation, the
// continuation's tokens are those of tokenize(context + continuation) after the context's
// tokens, and a sequence longer than the model's context loses tokens on the left. The requests
// of an item share their longest common token prefix: it runs once (PrefixRecordingCache) and
// every request continues from a replayed copy, all requests in one batched forward step.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "eval/prefix_replay_cache.h"
#include "eval/zeroshot_scoring.h"
#include "model/llama.h"
#include "model/model.h"
#include "util/thread_pool.h"

namespace cqkv {

// The tokens one request was scored on (for --dump and the reference check).
struct ZsScoredTokens {
  std::vector<int32_t> tokens;  // the whole (possibly left-truncated) sequence
  int64_t first_scored = 0;     // tokens[first_scored..] are the continuation
};

class ZsModelScorer {
 public:
  // `kv` is a --kv spec; `add_bos`: BOS before each context (when the vocabulary has one).
  ZsModelScorer(const Model& model, const std::string& kv, bool add_bos, ThreadPool& pool);

  std::vector<ZsLoglik> Score(const ZsItem& item);

  // The sequences of the last Score call, one per request.
  const std::vector<ZsScoredTokens>& last_tokens() const { return last_; }
  // Tokens run through the model so far (prefixes once, then each request's rest) and the
  // tokens a run without prefix sharing would have needed.
  int64_t tokens_forwarded() const { return forwarded_; }
  int64_t tokens_unshared() const { return unshared_; }
  const KvCache& cache() const { return *prefix_; }

 private:
  ZsScoredTokens Tokenize(const ZsRequest& r, int64_t line);

  const Model& model_;
  bool add_bos_;
  LlamaForward fwd_;
  std::unique_ptr<PrefixRecordingCache> prefix_;
  std::vector<std::unique_ptr<KvCache>> siblings_;
  std::vector<float> prefix_logits_;               // (1, vocab)
  std::vector<std::vector<float>> choice_logits_;  // per request (rows, vocab)
  std::vector<ZsScoredTokens> last_;
  std::string ctx_text_;             // the last context encoded
  std::vector<int32_t> ctx_tokens_;  // and its tokens
  int64_t forwarded_ = 0, unshared_ = 0;
};

}  // namespace cqkv
