// `cqkv eval-tasks`: zero-shot accuracy (lm-evaluation-harness scoring) of a model with a chosen
// KV cache on PIQA, ARC, WinoGrande, HellaSwag, BoolQ, COPA, OpenBookQA, SIQA and LAMBADA:
// progress on stderr, a table on stdout, JSON (and optionally every request's tokens and
// log-likelihood) for scripts.
#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdio>

#include "eval/zeroshot_loglik.h"
#include "eval/zeroshot_scoring.h"
#include "eval/zeroshot_tasks.h"
#include "kv/kv_spec.h"
#include "tools/common.h"
#include "util/atomic_file.h"
#include "util/error.h"

namespace cqkv::tools {
namespace {

std::string TaskListHelp() {
  std::string s;
  for (const ZsTask& t : ZeroShotTasks()) {
    s += fmt::format("  {:<16}{}{}\n", t.name, t.prompt, t.acc_norm ? " [acc, acc_norm]" : "");
  }
  return s;
}

}  // namespace

void RegisterEvalTasks(CLI::App& app) {
  struct Opts {
    ModelOptions m;
    std::string tasks, data_dir = "../shared/data/zeroshot", kv = "fp32", json, dump;
    int64_t limit = -1;
    bool no_bos = false, quiet = false;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = app.add_subcommand(
      "eval-tasks", "zero-shot task accuracy (lm-evaluation-harness scoring) with any KV cache");
  AddModelOptions(cmd, o->m);
  cmd->add_option(
         "--tasks", o->tasks,
         "comma-separated tasks, or all; prompts ({...} from the data):\n" + TaskListHelp())
      ->required();
  cmd->add_option("--data-dir", o->data_dir,
                  "folder of the task files (llm-foundry local-data JSON lines, llama.cpp's "
                  "hellaswag_val_full.txt)")
      ->capture_default_str();
  cmd->add_option("--limit", o->limit, "evaluate the first N items of each task (>= 1)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 40));
  cmd->add_option("--kv", o->kv, "KV cache format:\n" + KvFormatsHelp())->capture_default_str();
  cmd->add_option("--json", o->json, "write the results as JSON to this file")
      ->check(kNonEmptyPath);
  cmd->add_option("--dump", o->dump,
                  "write every request (task, line, choice, tokens, first scored token, loglik, "
                  "greedy) as JSON lines to this file")
      ->check(kNonEmptyPath);
  cmd->add_flag("--no-bos", o->no_bos,
                "no BOS before the context (the harness's default for Hugging Face models)");
  cmd->add_flag("-q,--quiet", o->quiet, "no progress output");
  cmd->callback([o] {
    // Everything a typo can break is checked before the model loads.
    const std::vector<const ZsTask*> tasks = ParseZeroShotTaskList(o->tasks);
    ParseKvSpec(o->kv);
    std::vector<std::vector<ZsItem>> items;
    int64_t total = 0;
    for (const ZsTask* t : tasks) {
      items.push_back(LoadZeroShotTask(*t, o->data_dir, o->limit));
      total += static_cast<int64_t>(items.back().size());
      if (!o->quiet && o->limit > static_cast<int64_t>(items.back().size())) {
        fmt::print(stderr, "{}: --limit {} but the file has {} items: all are used\n", t->name,
                   o->limit, items.back().size());
      }
    }
    auto model = LoadModelFrom(o->m);
    ThreadPool pool(o->m.threads);
    const bool add_bos = !o->no_bos && model->tok().bos() >= 0;
    ZsModelScorer scorer(*model, o->kv, add_bos, pool);

    const auto start = std::chrono::steady_clock::now();
    const bool tty = isatty(fileno(stderr)) != 0;
    int64_t done_before = 0;
    std::vector<ZsTaskResult> results;
    std::string dump;
    for (size_t ti = 0; ti < tasks.size(); ++ti) {
      const ZsTask& task = *tasks[ti];
      auto progress = [&](int64_t done, int64_t n) {
        if (o->quiet) return;
        const int64_t all_done = done_before + done;
        // In logs, a line per ~5% of all items and at each task's end.
        const int64_t step = std::max<int64_t>(1, total / 20);
        if (!tty && all_done % step != 0 && done != n) return;
        const double el =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        fmt::print(stderr, "{}[{} {}/{}] all {}/{} items, {:.1f} s elapsed, ~{:.0f} s left{}",
                   tty ? "\r" : "", task.name, done, n, all_done, total, el,
                   el / all_done * (total - all_done), tty && done != n ? "   " : "\n");
      };
      auto loglik = [&](const ZsItem& item) {
        std::vector<ZsLoglik> lls = scorer.Score(item);
        if (!o->dump.empty()) {
          for (size_t i = 0; i < lls.size(); ++i) {
            const ZsScoredTokens& s = scorer.last_tokens()[i];
            dump += nlohmann::json{{"task", task.name},
                                   {"line", item.line},
                                   {"choice", i},
                                   {"gold", item.gold},
                                   {"tokens", s.tokens},
                                   {"first_scored", s.first_scored},
                                   {"loglik", lls[i].loglik},
                                   {"greedy", lls[i].greedy}}
                        .dump() +
                    "\n";
          }
        }
        return lls;
      };
      results.push_back(EvalZeroShotTask(task, items[ti], loglik, progress));
      done_before += static_cast<int64_t>(items[ti].size());
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (!o->quiet) {
      fmt::print(stderr, "forwarded {} tokens ({} without prefix sharing) in {:.1f} s\n",
                 scorer.tokens_forwarded(), scorer.tokens_unshared(), seconds);
    }

    fmt::print("| task | n | acc | acc_norm | acc stderr | ppl | seconds |\n");
    fmt::print("|---|---|---|---|---|---|---|\n");
    double acc_sum = 0;
    for (const ZsTaskResult& r : results) {
      acc_sum += r.acc;
      fmt::print("| {} | {} | {:.4f} | {} | {:.4f} | {} | {:.1f} |\n", r.task, r.n, r.acc,
                 r.has_acc_norm ? fmt::format("{:.4f}", r.acc_norm) : "-", r.acc_stderr,
                 r.has_ppl ? fmt::format("{:.3f}", r.ppl) : "-", r.seconds);
    }
    fmt::print("| mean acc ({} tasks) | | {:.4f} | | | | {:.1f} |\n", results.size(),
               acc_sum / static_cast<double>(results.size()), seconds);

    if (!o->json.empty()) {
      nlohmann::json res = nlohmann::json::array();
      for (const ZsTaskResult& r : results) {
        nlohmann::json j = {{"task", r.task},         {"n", r.n},
                            {"acc", r.acc},           {"acc_stderr", r.acc_stderr},
                            {"requests", r.requests}, {"continuation_tokens", r.tokens},
                            {"seconds", r.seconds}};
        j["acc_norm"] = r.has_acc_norm ? nlohmann::json(r.acc_norm) : nlohmann::json(nullptr);
        if (r.has_acc_norm) j["acc_norm_stderr"] = r.acc_norm_stderr;
        if (r.has_ppl) {
          j["ppl"] = r.ppl;
          j["token_ppl"] = r.token_ppl;
        }
        res.push_back(j);
      }
      const nlohmann::json j = {{"model", model->path},
                                {"kv", o->kv},
                                {"kv_bits_per_channel", scorer.cache().BitsPerChannel()},
                                {"limit", o->limit},
                                {"add_bos", add_bos},
                                {"threads", pool.size()},
                                {"seconds", seconds},
                                {"tokens_forwarded", scorer.tokens_forwarded()},
                                {"tokens_unshared", scorer.tokens_unshared()},
                                {"mean_acc", acc_sum / static_cast<double>(results.size())},
                                {"results", res}};
      WriteJson(o->json, j.dump(2));
    }
    if (!o->dump.empty()) WriteFileAtomic(o->dump, dump);
  });
}

}  // namespace cqkv::tools
