// Perplexity with the standard protocol (GPTQ / KVQuant / the CQ paper): tokenize the whole text
// once, cut consecutive non-overlapping windows of ctx tokens (last partial window dropped),
// predict every token of a window from its prefix inside the window. Or with llama.cpp's
// (`llama-perplexity`): the same windows ("chunks"), each chunk's first token replaced by BOS,
// only the second half of each chunk scored. Optionally compares each scored next-token
// distribution with a baseline cache (KL divergence, top-1 agreement).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/model.h"
#include "util/thread_pool.h"

namespace cqkv {

enum class PplProtocol {
  kWindows,   // every token of a window after its first is scored
  kLlamaCpp,  // llama.cpp's tools/perplexity: BOS first, tokens ctx/2 + 1 .. ctx - 1 scored
};

struct PerplexityOptions {
  PplProtocol protocol = PplProtocol::kWindows;
  // kLlamaCpp: the token written over each chunk's first (the vocabulary's BOS when it adds
  // one, as llama.cpp does); -1 leaves chunks as they are.
  int32_t chunk_bos = -1;
  int ctx = 256;
  std::string kv = "fp32";
  std::string kl_base;       // empty: no KL; else a --kv spec for the reference cache
  int64_t max_windows = -1;  // < 0: all windows (llama.cpp calls them chunks)
  int batch = 512;           // tokens per forward call (prefill chunk)
};

struct PerplexityResult {
  double ppl = 0;
  double nll = 0;      // mean negative log-likelihood (nats) per predicted token
  int64_t tokens = 0;  // predicted tokens
  int64_t windows = 0;
  bool has_kl = false;
  double kld = 0;         // mean KL(base || kv) over predicted positions (nats)
  double top1_agree = 0;  // fraction where argmax(base) == argmax(kv)
  double base_ppl = 0;    // perplexity of the baseline cache on the same windows
  double kv_bytes_per_token = 0;
  double kv_bits_per_channel = 0;  // KvCache::BitsPerChannel
  double seconds = 0;
};

using ProgressFn = std::function<void(int64_t done, int64_t total, double running_ppl)>;

// Throws cqkv::Error when ctx exceeds the model's context or the text has less than one window
// (two for kLlamaCpp, whose minimum that is).
PerplexityResult EvalPerplexity(const Model& model, const std::vector<int32_t>& tokens,
                                const PerplexityOptions& opt, ThreadPool& pool,
                                const ProgressFn& progress = nullptr);

}  // namespace cqkv
