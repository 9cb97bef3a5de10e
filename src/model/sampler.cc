#include "model/sampler.h"

#include <algorithm>
#include <cmath>

namespace cqkv {

int32_t Sampler::Sample(const float* logits, int64_t vocab) {
  if (cfg_.temperature <= 0.0f) {
    return static_cast<int32_t>(std::max_element(logits, logits + vocab) - logits);
  }
  cand_.resize(static_cast<size_t>(vocab));
  for (int64_t i = 0; i < vocab; ++i) cand_[i] = {logits[i], static_cast<int32_t>(i)};
  auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first; };
  size_t keep = cand_.size();
  if (cfg_.top_k > 0 && static_cast<size_t>(cfg_.top_k) < keep) {
    keep = static_cast<size_t>(cfg_.top_k);
    std::partial_sort(cand_.begin(), cand_.begin() + keep, cand_.end(), by_logit);
  } else {
    std::sort(cand_.begin(), cand_.end(), by_logit);
  }
  const float mx = cand_[0].first;
  double sum = 0;
  for (size_t i = 0; i < keep; ++i) {
    cand_[i].first = std::exp((cand_[i].first - mx) / cfg_.temperature);
    sum += cand_[i].first;
  }
  if (cfg_.min_p > 0.0f) {
    // cand_ is sorted, so the kept tokens are a prefix; cand_[0] has weight exp(0) = 1 = p_max.
    size_t i = 1;
    while (i < keep && cand_[i].first >= cfg_.min_p) ++i;
    for (size_t j = i; j < keep; ++j) sum -= cand_[j].first;
    keep = i;
  }
  if (cfg_.top_p < 1.0f) {
    double cum = 0;
    for (size_t i = 0; i < keep; ++i) {
      cum += cand_[i].first / sum;
      if (cum >= cfg_.top_p) {
        keep = i + 1;
        break;
      }
    }
    sum = 0;
    for (size_t i = 0; i < keep; ++i) sum += cand_[i].first;
  }
  double u = std::uniform_real_distribution<double>(0.0, sum)(rng_);
  for (size_t i = 0; i < keep; ++i) {
    u -= cand_[i].first;
    if (u <= 0) return cand_[i].second;
  }
  return cand_[keep - 1].second;
}

}  // namespace cqkv
