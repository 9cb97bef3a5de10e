// lm-evaluation-harness's scoring of zero-shot items from per-request log-likelihoods, apart from
// any model: acc (argmax loglik), acc_norm (argmax loglik / characters of the choice), LAMBADA's
// greedy last-word accuracy and perplexity, and the harness's standard error of a mean.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "eval/zeroshot_tasks.h"

namespace cqkv {

// What a model says about one request.
struct ZsLoglik {
  double loglik = 0;    // sum over continuation tokens of log P(token | prefix), nats
  bool greedy = false;  // every continuation token is the argmax of its distribution
  int64_t tokens = 0;   // continuation tokens
};

struct ZsItemScore {
  int pred = -1;       // argmax loglik (first of ties, as numpy.argmax)
  int pred_norm = -1;  // argmax loglik / norm_len
  double acc = 0;      // 1 when right; kLastWord: greedy
  double acc_norm = 0;
};

// Throws cqkv::Error when `lls` does not hold one entry per request.
ZsItemScore ScoreZeroShotItem(const ZsTask& task, const ZsItem& item,
                              std::span<const ZsLoglik> lls);

struct ZsTaskResult {
  std::string task;
  int64_t n = 0;
  double acc = 0, acc_stderr = 0;
  bool has_acc_norm = false;
  double acc_norm = 0, acc_norm_stderr = 0;
  bool has_ppl = false;
  double ppl = 0;        // harness: exp(-mean over items of the continuation's loglik)
  double token_ppl = 0;  // exp(-sum loglik / sum tokens)
  int64_t requests = 0, tokens = 0;
  double seconds = 0;
};

// Sample standard error of the mean of n values whose mean is p and that are 0 or 1: the
// harness's sample_stddev / sqrt(n) = sqrt(p (1 - p) / (n - 1)); 0 for n < 2.
double BinaryMeanStderr(double p, int64_t n);

// Gives the log-likelihoods of every request of an item, in order.
using ZsLoglikFn = std::function<std::vector<ZsLoglik>(const ZsItem&)>;
// Called after each item with (items done, items total).
using ZsProgressFn = std::function<void(int64_t, int64_t)>;

ZsTaskResult EvalZeroShotTask(const ZsTask& task, std::span<const ZsItem> items,
                              const ZsLoglikFn& loglik, const ZsProgressFn& progress = nullptr);

}  // namespace cqkv
