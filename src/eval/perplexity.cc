#include "eval/perplexity.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>

#include "model/llama.h"
#include "util/error.h"

namespace cqkv {
namespace {

// log-softmax of one row, in double so the KL of near-identical distributions is not noise.
// `probs`, when given, receives the probabilities from the same exponentials.
void LogSoftmax(const float* logits, int64_t n, std::vector<double>& out,
                std::vector<double>* probs = nullptr) {
  out.resize(static_cast<size_t>(n));
  if (probs) probs->resize(static_cast<size_t>(n));
  double mx = -INFINITY;
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, static_cast<double>(logits[i]));
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double e = std::exp(logits[i] - mx);
    if (probs) (*probs)[i] = e;
    sum += e;
  }
  const double lse = mx + std::log(sum);
  for (int64_t i = 0; i < n; ++i) out[i] = logits[i] - lse;
  if (probs) {
    for (double& p : *probs) p /= sum;
  }
}

int64_t ArgMax(const float* x, int64_t n) { return std::max_element(x, x + n) - x; }

// One cache's forward state over a window.
struct Runner {
  std::unique_ptr<KvCache> cache;
  LlamaForward fwd;
  std::vector<float> logits;
  Runner(const Model& m, const std::string& spec, int ctx, ThreadPool& pool)
      : cache(MakeCacheFor(m, spec, ctx)), fwd(m, pool) {}
};

}  // namespace

PerplexityResult EvalPerplexity(const Model& model, const std::vector<int32_t>& tokens,
                                const PerplexityOptions& opt, ThreadPool& pool,
                                const ProgressFn& progress) {
  const auto t0 = std::chrono::steady_clock::now();
  const ModelConfig& c = model.config;
  CQKV_CHECK(opt.ctx >= 2, "--ctx {}: must be at least 2", opt.ctx);
  CQKV_CHECK(opt.ctx <= c.max_seq_len, "--ctx {}: longer than the context of model {} ({} tokens)",
             opt.ctx, model.path, c.max_seq_len);
  CQKV_CHECK(opt.batch >= 1, "--batch {}: must be positive", opt.batch);
  const bool llama_cpp = opt.protocol == PplProtocol::kLlamaCpp;
  int64_t windows = static_cast<int64_t>(tokens.size()) / opt.ctx;
  CQKV_CHECK(windows > 0, "data has {} tokens, fewer than one window of --ctx {}", tokens.size(),
             opt.ctx);
  // llama.cpp refuses texts shorter than two chunks; so do we, to report the same figures.
  CQKV_CHECK(!llama_cpp || opt.ctx >= 3,
             "--ctx {}: the llama.cpp protocol scores tokens ctx/2+1..ctx-1, so needs ctx >= 3",
             opt.ctx);
  CQKV_CHECK(!llama_cpp || windows >= 2,
             "data has {} tokens; the llama.cpp protocol needs at least 2 chunks of --ctx {}",
             tokens.size(), opt.ctx);
  // Positions whose prediction is scored: from the window's first, or (llama.cpp) its middle.
  const int64_t first_scored = llama_cpp ? opt.ctx / 2 : 0;
  if (opt.max_windows >= 0) windows = std::min(windows, opt.max_windows);

  Runner main(model, opt.kv, opt.ctx, pool);
  std::unique_ptr<Runner> base;
  if (!opt.kl_base.empty()) base = std::make_unique<Runner>(model, opt.kl_base, opt.ctx, pool);

  const int64_t V = c.vocab_size;
  double nll_sum = 0, base_nll_sum = 0, kl_sum = 0;
  int64_t agree = 0, count = 0;
  std::vector<double> lp, lq, pb;
  std::vector<int32_t> chunk_tokens(static_cast<size_t>(opt.ctx));
  for (int64_t w = 0; w < windows; ++w) {
    std::copy_n(tokens.begin() + w * opt.ctx, opt.ctx, chunk_tokens.begin());
    if (llama_cpp && opt.chunk_bos >= 0) chunk_tokens[0] = opt.chunk_bos;
    const int32_t* win = chunk_tokens.data();
    main.cache->Clear();
    if (base) base->cache->Clear();
    // The window's last token predicts nothing inside the window, so it is never fed.
    for (int64_t p0 = 0; p0 < opt.ctx - 1; p0 += opt.batch) {
      const int64_t n = std::min<int64_t>(opt.batch, opt.ctx - 1 - p0);
      std::span<const int32_t> chunk(win + p0, static_cast<size_t>(n));
      for (Runner* r : {&main, base.get()}) {
        if (r == nullptr) continue;
        r->logits.resize(static_cast<size_t>(n * V));
        r->fwd.Forward(chunk, *r->cache, Mat(r->logits.data(), n, V));
      }
      for (int64_t i = 0; i < n; ++i) {
        if (p0 + i < first_scored) continue;
        const int32_t target = win[p0 + i + 1];
        const float* lm = main.logits.data() + i * V;
        LogSoftmax(lm, V, lq);
        nll_sum -= lq[target];
        if (base) {
          const float* lb = base->logits.data() + i * V;
          LogSoftmax(lb, V, lp, &pb);
          base_nll_sum -= lp[target];
          double kl = 0;
          for (int64_t j = 0; j < V; ++j) kl += pb[j] * (lp[j] - lq[j]);
          kl_sum += kl;
          agree += ArgMax(lm, V) == ArgMax(lb, V);
        }
        ++count;
      }
    }
    if (progress) progress(w + 1, windows, std::exp(nll_sum / count));
  }

  PerplexityResult r;
  r.tokens = count;
  r.windows = windows;
  r.nll = nll_sum / count;
  r.ppl = std::exp(r.nll);
  r.kv_bytes_per_token = main.cache->BytesPerToken();
  r.kv_bits_per_channel = main.cache->BitsPerChannel();
  if (base) {
    r.has_kl = true;
    r.kld = kl_sum / count;
    r.top1_agree = static_cast<double>(agree) / count;
    r.base_ppl = std::exp(base_nll_sum / count);
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace cqkv
