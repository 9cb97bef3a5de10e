// `cqkv generate`: streams a continuation of a prompt and reports prefill and decode speed. A thin
// client of the public engine API (include/cqkv/engine.h): one request, stepped on this thread.
#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>

#include "cqkv/engine.h"
#include "tools/common.h"

namespace cqkv::tools {

void RegisterGenerate(CLI::App& app) {
  struct Opts {
    ModelOptions m;
    std::string prompt, kv = "fp32", json;
    int n = 64;
    SamplingParams s;
  };
  auto o = std::make_shared<Opts>();
  o->s.temperature = 0.0f;
  CLI::App* cmd = app.add_subcommand("generate", "generate text from a prompt");
  AddModelOptions(cmd, o->m);
  cmd->add_option("-p,--prompt", o->prompt, "prompt text")->required();
  cmd->add_option("-n,--n-predict", o->n, "tokens to generate")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 30));
  cmd->add_option("--temp", o->s.temperature, "sampling temperature (0 = greedy)")
      ->capture_default_str()
      ->check(FiniteRange(0.0, 100.0));
  cmd->add_option("--top-k", o->s.top_k, "top-k cut (0 = off)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 30));
  cmd->add_option("--top-p", o->s.top_p, "nucleus cut in (0, 1] (1 = off)")
      ->capture_default_str()
      ->check(FiniteRange(1e-6, 1.0));
  cmd->add_option("--min-p", o->s.min_p, "drop tokens below min-p x the top probability (0 = off)")
      ->capture_default_str()
      ->check(FiniteRange(0.0, 1.0));
  cmd->add_option("--seed", o->s.seed, "random seed")->capture_default_str();
  cmd->add_option("--stop", o->s.stop, "stop string (repeatable)");
  cmd->add_option("--kv", o->kv, "KV cache format")->capture_default_str();
  cmd->add_option("--json", o->json, "write timings and the generated ids as JSON")
      ->check(kNonEmptyPath);
  cmd->callback([o] {
    EngineConfig ec;
    ec.model_path = o->m.model;
    ec.tokenizer_path = o->m.tokenizer;
    ec.kv = o->kv;
    ec.threads = o->m.threads;
    ec.kv_memory_bytes = int64_t{1} << 50;  // one sequence: pages as it needs them
    auto engine = Engine::Create(ec);
    const ModelInfo& info = engine->Info();
    const auto prompt = engine->Tokenize(o->prompt, /*add_bos=*/true);
    const int64_t total = static_cast<int64_t>(prompt.size()) + o->n;
    if (total > info.context_length) {
      throw Error(fmt::format("prompt ({} tokens) + -n {} exceeds the context of {} tokens",
                              prompt.size(), o->n, info.context_length));
    }
    fmt::print(stderr, "model: {} ({}), ctx {}, vocab {}\n", o->m.model, info.arch,
               info.context_length, info.vocab_size);

    using Clock = std::chrono::steady_clock;
    Clock::time_point t_first;
    std::vector<int32_t> out;
    FinishReason finish = FinishReason::kNone;
    std::string error;
    Request req;
    req.prompt_tokens = prompt;
    req.sampling = o->s;
    req.sampling.max_tokens = o->n;
    req.on_token = [&](const TokenEvent& e) {
      if (e.token >= 0 && out.empty()) t_first = Clock::now();
      if (e.token >= 0) out.push_back(e.token);
      fmt::print("{}", e.text);
      std::fflush(stdout);
      if (e.done) {
        finish = e.finish;
        error = e.error;
      }
    };
    fmt::print("{}", o->prompt);
    std::fflush(stdout);
    const auto t0 = Clock::now();
    engine->Submit(std::move(req));
    engine->RunUntilIdle();
    const auto t2 = Clock::now();
    if (finish == FinishReason::kError) throw Error(error);
    const double prefill_s = std::chrono::duration<double>(t_first - t0).count();
    const double decode_s = std::chrono::duration<double>(t2 - t_first).count();
    const double prefill_tps = prompt.size() / prefill_s;
    const double decode_tps = out.size() > 1 ? (out.size() - 1) / decode_s : 0.0;
    fmt::print("\n");
    std::fflush(stdout);  // the text ends before the statistics line on a shared terminal
    fmt::print(stderr,
               "prefill: {} tokens, {:.1f} tok/s | decode: {} tokens, {:.1f} tok/s | kv {} "
               "({:.2f} bits/channel) | finish {}\n",
               prompt.size(), prefill_tps, out.size(), decode_tps, o->kv, info.kv_bits_per_channel,
               FinishReasonName(finish));
    if (!o->json.empty()) {
      nlohmann::json j = {{"prompt_tokens", prompt.size()},
                          {"generated", out},
                          {"prefill_tok_s", prefill_tps},
                          {"decode_tok_s", decode_tps},
                          {"kv", o->kv},
                          {"finish", FinishReasonName(finish)}};
      WriteJson(o->json, j.dump(2));
    }
  });
}

}  // namespace cqkv::tools
