// `cqkv generate`: streams a continuation of a prompt and reports prefill and decode speed.
#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>

#include "model/llama.h"
#include "model/sampler.h"
#include "tools/common.h"
#include "util/error.h"

namespace cqkv::tools {

void RegisterGenerate(CLI::App& app) {
  struct Opts {
    ModelOptions m;
    std::string prompt, kv = "fp32", json;
    int n = 64;
    SamplerConfig s;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = app.add_subcommand("generate", "generate text from a prompt");
  AddModelOptions(cmd, o->m);
  cmd->add_option("-p,--prompt", o->prompt, "prompt text")->required();
  cmd->add_option("-n,--n-predict", o->n, "tokens to generate")->capture_default_str();
  cmd->add_option("--temp", o->s.temperature, "sampling temperature (0 = greedy)")
      ->capture_default_str();
  cmd->add_option("--top-k", o->s.top_k, "top-k cut (0 = off)")->capture_default_str();
  cmd->add_option("--top-p", o->s.top_p, "nucleus cut (1 = off)")->capture_default_str();
  cmd->add_option("--seed", o->s.seed, "random seed")->capture_default_str();
  cmd->add_option("--kv", o->kv, "KV cache format")->capture_default_str();
  cmd->add_option("--json", o->json, "write timings and the generated ids as JSON");
  cmd->callback([o] {
    auto model = LoadModelFrom(o->m);
    const Tokenizer& tok = model->tok();
    const auto prompt = tok.Encode(o->prompt, /*add_bos=*/true);
    const int64_t total = static_cast<int64_t>(prompt.size()) + o->n;
    CQKV_CHECK(total <= model->config.max_seq_len,
               "prompt ({} tokens) + -n {} exceeds the model context of {} tokens", prompt.size(),
               o->n, model->config.max_seq_len);
    ThreadPool pool(o->m.threads);
    LlamaForward fwd(*model, pool);
    auto cache = MakeCacheFor(*model, o->kv, static_cast<int>(total));
    Sampler sampler(o->s);
    const int64_t V = model->config.vocab_size;
    std::vector<float> logits(static_cast<size_t>(V));

    fmt::print("{}", o->prompt);
    std::fflush(stdout);
    using Clock = std::chrono::steady_clock;
    const auto t0 = Clock::now();
    fwd.Forward(prompt, *cache, Mat(logits.data(), 1, V));
    const auto t1 = Clock::now();
    std::vector<int32_t> out;
    for (int i = 0; i < o->n; ++i) {
      const int32_t next = sampler.Sample(logits.data(), V);
      if (next == tok.eos()) break;
      out.push_back(next);
      fmt::print("{}", tok.Decode(next));
      std::fflush(stdout);
      if (i + 1 < o->n)
        fwd.Forward(std::span<const int32_t>(&next, 1), *cache, Mat(logits.data(), 1, V));
    }
    const auto t2 = Clock::now();
    const double prefill_s = std::chrono::duration<double>(t1 - t0).count();
    const double decode_s = std::chrono::duration<double>(t2 - t1).count();
    const double prefill_tps = prompt.size() / prefill_s;
    const double decode_tps = out.size() > 1 ? (out.size() - 1) / decode_s : 0.0;
    fmt::print("\n");
    std::fflush(stdout);  // the text ends before the statistics line on a shared terminal
    fmt::print(stderr,
               "prefill: {} tokens, {:.1f} tok/s | decode: {} tokens, {:.1f} tok/s | kv {} "
               "({:.0f} bytes/token) | {} threads\n",
               prompt.size(), prefill_tps, out.size(), decode_tps, o->kv, cache->BytesPerToken(),
               pool.size());
    if (!o->json.empty()) {
      nlohmann::json j = {
          {"prompt_tokens", prompt.size()}, {"generated", out}, {"prefill_tok_s", prefill_tps},
          {"decode_tok_s", decode_tps},     {"kv", o->kv},      {"threads", pool.size()}};
      WriteJson(o->json, j.dump(2));
    }
  });
}

}  // namespace cqkv::tools
