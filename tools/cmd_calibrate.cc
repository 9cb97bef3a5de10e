// `cqkv calibrate`: learns CQ codebooks for a model from calibration text and writes a .cqcb.
#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>

#include "calibrate/calibrate.h"
#include "eval/dataset.h"
#include "tools/common.h"
#include "util/error.h"

namespace cqkv::tools {
namespace {

// The evaluation texts of this project: calibrating on them would flatter every result.
void RefuseEvaluationText(const TextSource& src) {
  const std::string name = std::filesystem::path(src.path).filename().string();
  CQKV_CHECK(name != "wiki.test.raw",
             "--data {}: WikiText-2 test is evaluation text; calibrate on other text "
             "(or pass --allow-eval-data)",
             src.path);
  CQKV_CHECK(name != "c4_validation_1900.jsonl" || (src.doc_end >= 0 && src.doc_end <= 1800),
             "--data {}: documents 1800..1899 are the C4 evaluation hold-out; select earlier "
             "ones, e.g. {}:0:200 (or pass --allow-eval-data)",
             src.path, src.path);
}

}  // namespace

void RegisterCalibrate(CLI::App& app) {
  struct Opts {
    ModelOptions m;
    std::string data, out, config = "4c8b", tokens = "16x256", keys = "post-rope", json;
    std::string values = "kmeans";
    bool allow_eval = false, quiet = false;
    CalibrationOptions c;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = app.add_subcommand("calibrate", "learn CQ codebooks from calibration text");
  AddModelOptions(cmd, o->m);
  cmd->add_option("--data", o->data,
                  "calibration text (raw, or .jsonl[:B:E] documents B..E-1); never the "
                  "evaluation text")
      ->required();
  cmd->add_option("--config", o->config, "CQ config <c>c<b>b: c channels per b-bit code")
      ->capture_default_str();
  cmd->add_flag("--fisher", o->c.fisher,
                "weight k-means by the diagonal Fisher information (squared loss gradients)");
  cmd->add_option("--tokens", o->tokens, "calibration windows x tokens per window")
      ->capture_default_str();
  cmd->add_option("--keys", o->keys, "quantise keys pre-rope or post-rope")
      ->check(CLI::IsMember({"pre-rope", "post-rope"}))
      ->capture_default_str();
  cmd->add_option("--values", o->values,
                  "value codebooks: kmeans (free centroids) or additive (b0 + the basis vectors "
                  "the code's bits select: dense aggregation, fitted by alternating least squares)")
      ->check(CLI::IsMember({"kmeans", "additive"}))
      ->capture_default_str();
  cmd->add_option("--iters", o->c.max_iter, "max k-means iterations")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  cmd->add_option("--restarts", o->c.n_init, "k-means restarts (best kept)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  cmd->add_option("--seed", o->c.seed, "k-means seed")->capture_default_str();
  cmd->add_option("-o,--out", o->out, "output codebook file (.cqcb)")
      ->required()
      ->check(kNonEmptyPath);
  cmd->add_option("--json", o->json, "write a calibration report (objective per layer, time)")
      ->check(kNonEmptyPath);
  cmd->add_flag("--allow-eval-data", o->allow_eval, "allow calibrating on evaluation text");
  cmd->add_flag("-q,--quiet", o->quiet, "no progress output");
  cmd->callback([o] {
    o->c.config = CqConfig::Parse(o->config);
    o->c.keys = ParseKeyPosition(o->keys);
    o->c.values = ParseValueKind(o->values);
    ParseTokensSpec(o->tokens, &o->c.n_seqs, &o->c.seq_len);
    const TextSource src = ParseTextSource(o->data);
    if (!o->allow_eval) RefuseEvaluationText(src);
    auto model = LoadModelFrom(o->m);
    const auto t0 = std::chrono::steady_clock::now();
    const auto ids = model->tok().Encode(LoadText(src), /*add_bos=*/true);
    o->c.description =
        fmt::format("{} ({} x {} tokens, {}, {}, {} values)", o->data, o->c.n_seqs, o->c.seq_len,
                    o->c.fisher ? "fisher" : "uniform", o->keys, o->values);
    ThreadPool pool(o->m.threads);
    int last_percent = -1;
    auto progress = [&last_percent](const std::string& msg, double frac) {
      const int percent = static_cast<int>(100 * frac);
      if (percent == last_percent) return;  // at most one line per percent
      last_percent = percent;
      fmt::print(stderr, "\rcalibrate: {:3d}% {}        ", percent, msg);
      if (frac >= 1.0) fmt::print(stderr, "\n");
    };
    const CodebookSet set =
        Calibrate(*model, ids, o->c, pool, o->quiet ? CalibrationProgress() : progress);
    SaveCodebooks(set, o->out);
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    fmt::print("| layer | K objective | V objective |\n|---|---|---|\n");
    for (int l = 0; l < set.n_layers; ++l) {
      fmt::print("| {} | {:.6g} | {:.6g} |\n", l, set.objective[2 * l], set.objective[2 * l + 1]);
    }
    fmt::print(stderr, "wrote {} (CQ-{}, {} keys, {}) in {:.1f} s with {} threads\n", o->out,
               set.config.Name(), o->keys, o->c.fisher ? "fisher" : "uniform", secs, pool.size());
    if (!o->json.empty()) {
      nlohmann::json j = {{"codebooks", o->out},    {"config", set.config.Name()},
                          {"keys", o->keys},        {"fisher", o->c.fisher},
                          {"tokens", o->tokens},    {"data", o->data},
                          {"model", model->path},   {"seconds", secs},
                          {"threads", pool.size()}, {"objective", set.objective}};
      WriteJson(o->json, j.dump(2));
    }
  });
}

}  // namespace cqkv::tools
