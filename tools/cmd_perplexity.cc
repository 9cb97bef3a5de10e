// `cqkv perplexity`: perplexity (and KL vs a baseline cache) of a model over a text file, with a
// human-readable table on stdout, progress on stderr and a JSON result for scripts.
#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "eval/dataset.h"
#include "eval/perplexity.h"
#include "kv/kv_cache.h"
#include "tools/common.h"
#include "util/error.h"

namespace cqkv::tools {

void RegisterPerplexity(CLI::App& app) {
  struct Opts {
    ModelOptions m;
    std::string data, json, kl_base;
    PerplexityOptions p;
    bool quiet = false;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = app.add_subcommand(
      "perplexity", "perplexity over non-overlapping windows of a text (optionally KL vs a base)");
  AddModelOptions(cmd, o->m);
  cmd->add_option("--data", o->data,
                  "text file (raw text, or .jsonl with a \"text\" field; FILE.jsonl:B:E selects "
                  "documents B..E-1)")
      ->required();
  cmd->add_option("-c,--ctx", o->p.ctx, "window length in tokens")
      ->capture_default_str()
      ->check(CLI::Range(2, 1 << 24));
  cmd->add_option("--kv", o->p.kv, "KV cache format:\n" + KvFormatsHelp())->capture_default_str();
  cmd->add_option("--kl-base", o->p.kl_base,
                  "also run this KV format on the same windows and report KL divergence and "
                  "top-1 agreement against it (e.g. fp32)");
  cmd->add_option("--max-windows", o->p.max_windows, "evaluate at most this many windows (>= 1)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  cmd->add_option("-b,--batch", o->p.batch, "tokens per forward call")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--json", o->json, "write the result as JSON to this file")->check(kNonEmptyPath);
  cmd->add_flag("-q,--quiet", o->quiet, "no progress output");
  cmd->callback([o] {
    auto model = LoadModelFrom(o->m);
    const TextSource src = ParseTextSource(o->data);
    const std::string text = LoadText(src);
    const auto t0 = std::chrono::steady_clock::now();
    const auto tokens = model->tok().Encode(text, /*add_bos=*/true);
    const double tok_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!o->quiet) {
      fmt::print(stderr, "data: {} ({} bytes) -> {} tokens in {:.2f} s\n", o->data, text.size(),
                 tokens.size(), tok_s);
    }
    ThreadPool pool(o->m.threads);
    ProgressFn progress;
    const auto start = std::chrono::steady_clock::now();
    if (!o->quiet) {
      // A live line on a terminal; in logs, one line per ~10% so they stay readable.
      const bool tty = isatty(fileno(stderr)) != 0;
      progress = [&, tty](int64_t done, int64_t total, double ppl) {
        const double el =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        const int64_t step = std::max<int64_t>(1, total / 10);
        if (!tty && done % step != 0 && done != total) return;
        fmt::print(stderr, "{}[{}/{}] running ppl {:.4f}  {:.1f} s elapsed, ~{:.0f} s left{}",
                   tty ? "\r" : "", done, total, ppl, el, el / done * (total - done),
                   tty && done != total ? "   " : "\n");
      };
    }
    const PerplexityResult r = EvalPerplexity(*model, tokens, o->p, pool, progress);

    fmt::print(
        "| model | data | kv | ctx | windows | tokens | ppl | KV bits/channel | KV bytes/token "
        "|{}\n",
        r.has_kl ? " base ppl | KL (nats) | top-1 agree |" : "");
    fmt::print("|---|---|---|---|---|---|---|---|---|{}\n", r.has_kl ? "---|---|---|" : "");
    fmt::print("| {} | {} | {} | {} | {} | {} | {:.4f} | {:.3g} | {:.0f} |", model->path, o->data,
               o->p.kv, o->p.ctx, r.windows, r.tokens, r.ppl, r.kv_bits_per_channel,
               r.kv_bytes_per_token);
    if (r.has_kl) fmt::print(" {:.4f} | {:.4g} | {:.4f} |", r.base_ppl, r.kld, r.top1_agree);
    fmt::print("\n");
    if (!o->json.empty()) {
      nlohmann::json j = {{"ppl", r.ppl},
                          {"nll", r.nll},
                          {"tokens", r.tokens},
                          {"windows", r.windows},
                          {"ctx", o->p.ctx},
                          {"kv", o->p.kv},
                          {"kv_bytes_per_token", r.kv_bytes_per_token},
                          {"kv_bits_per_channel", r.kv_bits_per_channel},
                          {"model", model->path},
                          {"data", o->data},
                          {"threads", pool.size()},
                          {"seconds", r.seconds}};
      if (r.has_kl) {
        j["kl_base"] = o->p.kl_base;
        j["kld"] = r.kld;
        j["top1_agree"] = r.top1_agree;
        j["base_ppl"] = r.base_ppl;
      }
      WriteJson(o->json, j.dump(2));
    }
  });
}

}  // namespace cqkv::tools
