#include "eval/zeroshot_loglik.h"

#include <algorithm>
#include <cmath>
#include <span>

#include "util/error.h"

namespace cqkv {
namespace {

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

// log P(target) and whether target is the argmax (first of ties), from one row of logits.
std::pair<double, bool> TokenLoglik(const float* logits, int64_t n, int32_t target) {
  const float* best = std::max_element(logits, logits + n);
  const double mx = *best;
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(logits[i]) - mx);
  const double lse = mx + std::log(sum);
  return {static_cast<double>(logits[target]) - lse, best - logits == target};
}

}  // namespace

ZsModelScorer::ZsModelScorer(const Model& model, const std::string& kv, bool add_bos,
                             ThreadPool& pool)
    : model_(model),
      add_bos_(add_bos),
      fwd_(model, pool),
      prefix_(std::make_unique<PrefixRecordingCache>(
          MakeCacheFor(model, kv, model.config.max_seq_len))) {}

ZsScoredTokens ZsModelScorer::Tokenize(const ZsRequest& r, int64_t line) {
  const Tokenizer& tok = model_.tok();
  // The harness moves the context's trailing whitespace to the continuation.
  size_t cut = r.context.size();
  while (cut > 0 && IsSpace(r.context[cut - 1])) --cut;
  const std::string context = r.context.substr(0, cut);
  const std::string continuation = r.context.substr(cut) + r.continuation;
  // The choices of an item share their context: encode it once.
  if (context != ctx_text_ || ctx_tokens_.empty()) {
    ctx_tokens_ = tok.Encode(context, add_bos_);
    ctx_text_ = context;
  }
  const std::vector<int32_t>& ctx = ctx_tokens_;
  const std::vector<int32_t> whole = tok.Encode(context + continuation, add_bos_);
  CQKV_CHECK(!ctx.empty(), "item at line {}: the context has no tokens (and no BOS is added)",
             line);
  CQKV_CHECK(whole.size() > ctx.size(),
             "item at line {}: the continuation '{}' adds no tokens to its context", line,
             r.continuation);
  ZsScoredTokens s;
  s.tokens = ctx;
  s.tokens.insert(s.tokens.end(), whole.begin() + static_cast<int64_t>(ctx.size()), whole.end());
  const int64_t n_cont = static_cast<int64_t>(whole.size() - ctx.size());
  const int64_t max_len = model_.config.max_seq_len;
  CQKV_CHECK(n_cont <= max_len,
             "item at line {}: the continuation has {} tokens, more than the model's context ({})",
             line, n_cont, max_len);
  // As the harness: the model sees at most max_len tokens, the oldest dropped first.
  const int64_t excess = static_cast<int64_t>(s.tokens.size()) - (max_len + 1);
  if (excess > 0) s.tokens.erase(s.tokens.begin(), s.tokens.begin() + excess);
  s.first_scored = static_cast<int64_t>(s.tokens.size()) - n_cont;
  return s;
}

std::vector<ZsLoglik> ZsModelScorer::Score(const ZsItem& item) {
  const size_t n = item.requests.size();
  const int64_t V = model_.config.vocab_size;
  last_.clear();
  for (const ZsRequest& r : item.requests) last_.push_back(Tokenize(r, item.line));

  // Shared prefix: the common leading tokens, stopping before any request's first scored token.
  int64_t L = last_[0].first_scored;
  for (const ZsScoredTokens& s : last_) {
    L = std::min(L, s.first_scored);
    int64_t k = 0;
    while (k < L && s.tokens[k] == last_[0].tokens[k]) ++k;
    L = k;
  }
  prefix_->Clear();
  if (L > 0) {
    prefix_logits_.resize(static_cast<size_t>(V));
    fwd_.Forward(std::span(last_[0].tokens.data(), static_cast<size_t>(L)), *prefix_,
                 Mat(prefix_logits_.data(), 1, V));
    forwarded_ += L;
  }
  while (siblings_.size() < n) siblings_.push_back(prefix_->NewSibling());
  choice_logits_.resize(n);
  std::vector<BatchItem> batch;
  for (size_t i = 0; i < n; ++i) {
    const ZsScoredTokens& s = last_[i];
    KvCache& sib = *siblings_[i];
    sib.Clear();
    if (L > 0) prefix_->ReplayPrefix(sib);
    // The last token predicts nothing, so it is never fed.
    const int64_t rest = static_cast<int64_t>(s.tokens.size()) - 1 - L;
    unshared_ += static_cast<int64_t>(s.tokens.size()) - 1;
    if (rest <= 0) continue;
    choice_logits_[i].resize(static_cast<size_t>(rest * V));
    batch.push_back(BatchItem{&sib, std::span(s.tokens.data() + L, static_cast<size_t>(rest)),
                              Mat(choice_logits_[i].data(), rest, V)});
    forwarded_ += rest;
  }
  if (!batch.empty()) fwd_.ForwardBatch(batch);

  std::vector<ZsLoglik> out(n);
  for (size_t i = 0; i < n; ++i) {
    const ZsScoredTokens& s = last_[i];
    ZsLoglik& o = out[i];
    o.greedy = true;
    for (int64_t j = s.first_scored; j < static_cast<int64_t>(s.tokens.size()); ++j) {
      // Token j is predicted by the logits of position j - 1.
      const int64_t row = j - 1;
      const float* logits =
          row == L - 1 ? prefix_logits_.data() : choice_logits_[i].data() + (row - L) * V;
      const auto [lp, greedy] = TokenLoglik(logits, V, s.tokens[static_cast<size_t>(j)]);
      o.loglik += lp;
      o.greedy = o.greedy && greedy;
      ++o.tokens;
    }
  }
  return out;
}

}  // namespace cqkv
