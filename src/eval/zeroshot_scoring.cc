#include "eval/zeroshot_scoring.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "util/error.h"

namespace cqkv {

ZsItemScore ScoreZeroShotItem(const ZsTask& task, const ZsItem& item,
                              std::span<const ZsLoglik> lls) {
  CQKV_CHECK(lls.size() == item.requests.size(), "{} line {}: {} log-likelihoods for {} requests",
             task.name, item.line, lls.size(), item.requests.size());
  ZsItemScore s;
  if (task.scoring == ZsScoring::kLastWord) {
    s.acc = lls[0].greedy ? 1 : 0;
    return s;
  }
  // Strict '>' keeps the first of equal scores, as numpy.argmax does.
  s.pred = s.pred_norm = 0;
  for (size_t i = 1; i < lls.size(); ++i) {
    if (lls[i].loglik > lls[s.pred].loglik) s.pred = static_cast<int>(i);
    const auto norm = [&](size_t k) {
      return lls[k].loglik / static_cast<double>(item.requests[k].norm_len);
    };
    if (norm(i) > norm(s.pred_norm)) s.pred_norm = static_cast<int>(i);
  }
  s.acc = s.pred == item.gold ? 1 : 0;
  s.acc_norm = s.pred_norm == item.gold ? 1 : 0;
  return s;
}

double BinaryMeanStderr(double p, int64_t n) {
  if (n < 2) return 0;
  return std::sqrt(p * (1 - p) / static_cast<double>(n - 1));
}

ZsTaskResult EvalZeroShotTask(const ZsTask& task, std::span<const ZsItem> items,
                              const ZsLoglikFn& loglik, const ZsProgressFn& progress) {
  const auto t0 = std::chrono::steady_clock::now();
  ZsTaskResult r;
  r.task = std::string(task.name);
  double acc = 0, acc_norm = 0, ll_sum = 0;
  for (const ZsItem& item : items) {
    const std::vector<ZsLoglik> lls = loglik(item);
    const ZsItemScore s = ScoreZeroShotItem(task, item, lls);
    acc += s.acc;
    acc_norm += s.acc_norm;
    for (const ZsLoglik& l : lls) {
      ll_sum += l.loglik;
      r.tokens += l.tokens;
    }
    r.requests += static_cast<int64_t>(lls.size());
    ++r.n;
    if (progress) progress(r.n, static_cast<int64_t>(items.size()));
  }
  if (r.n > 0) {
    r.acc = acc / r.n;
    r.acc_stderr = BinaryMeanStderr(r.acc, r.n);
    r.has_acc_norm = task.acc_norm;
    if (r.has_acc_norm) {
      r.acc_norm = acc_norm / r.n;
      r.acc_norm_stderr = BinaryMeanStderr(r.acc_norm, r.n);
    }
    if (task.scoring == ZsScoring::kLastWord) {
      r.has_ppl = true;
      r.ppl = std::exp(-ll_sum / r.n);
      r.token_ppl = std::exp(-ll_sum / static_cast<double>(std::max<int64_t>(1, r.tokens)));
    }
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace cqkv
