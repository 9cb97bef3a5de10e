// `cqkv calibrate`: learns CQ codebooks for a model from calibration text and writes a .cqcb.
#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>

#include "calibrate/calibrate.h"
#include "eval/dataset.h"
#include "model/synthetic.h"
#include "tools/common.h"
#include "util/error.h"
#include "util/process_stats.h"

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

std::string Duration(double secs) {
  const int64_t s = static_cast<int64_t>(secs + 0.5);
  if (s >= 3600) return fmt::format("{}h{:02d}m", s / 3600, s % 3600 / 60);
  if (s >= 60) return fmt::format("{}m{:02d}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

// Progress on stderr, at most one line a second: the stage, its count, the time spent and the
// stage's remaining time at its rate so far (k-means time is only known once it has started).
class ProgressLine {
 public:
  void operator()(const CalibrationStatus& s) {
    using Clock = std::chrono::steady_clock;
    const auto now = Clock::now();
    if (stage_ != s.stage) {  // the stage began when the previous one last reported
      if (!stage_.empty()) fmt::print(stderr, "\n");
      stage_ = s.stage;
      stage_start_ = last_;
      printed_ = {};
      printed_done_ = -1;
    }
    last_ = now;
    const bool last = s.done >= s.total;
    if (last ? s.done == printed_done_ : now - printed_ < std::chrono::seconds(1)) return;
    printed_done_ = s.done;
    printed_ = now;
    const double spent = std::chrono::duration<double>(now - stage_start_).count();
    const double total = std::chrono::duration<double>(now - start_).count();
    const std::string eta =
        last ? "done" : fmt::format("ETA {}", Duration(spent / s.done * (s.total - s.done)));
    fmt::print(stderr, "\rcalibrate: {} {}/{} | {} elapsed | {}        ", stage_, s.done, s.total,
               Duration(total), eta);
    if (last && stage_ == "k-means") fmt::print(stderr, "\n");
  }

 private:
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point stage_start_, printed_, last_ = start_;
  int64_t printed_done_ = -1;
  std::string stage_;
};

}  // namespace

void RegisterCalibrate(CLI::App& app) {
  struct Opts {
    ModelOptions m;
    std::string data, out, config = "4c8b", tokens = "16x256", keys = "post-rope", json;
    std::string spill_dir;  // empty: $TMPDIR or /tmp, resolved when the command runs
    std::string synthetic, weights = "f16";  // --synthetic 7b: SevenBShape, for memory checks
    std::string values = "kmeans";
    int layers = 2, kv_heads = 32;
    bool allow_eval = false, quiet = false, in_memory = false;
    CalibrationOptions c;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = app.add_subcommand("calibrate", "learn CQ codebooks from calibration text");
  AddModelOptions(cmd, o->m);
  cmd->get_option("--model")->required(false);  // --synthetic needs no file
  cmd->add_option("--data", o->data,
                  "calibration text: comma-separated files, each raw text or .jsonl[:B:E] "
                  "(documents B..E-1), joined by blank lines; never the evaluation text")
      ->required();
  cmd->add_option("--config", o->config, "CQ config <c>c<b>b: c channels per b-bit code")
      ->capture_default_str();
  cmd->add_flag("--fisher", o->c.fisher,
                "weight k-means by the diagonal Fisher information (squared loss gradients)");
  cmd->add_option("--tokens", o->tokens, "calibration windows x tokens per window")
      ->capture_default_str();
  cmd->add_option("--keys", o->keys,
                  "quantise keys pre-rope or post-rope (post-rope: fastest decode, :fs; pre-rope: "
                  "better quality); rope-comm: pre-rope, checked to group whole RoPE pairs and "
                  "recorded so (pre-RoPE codebooks that do decode with the rope-comm kernel)")
      ->check(CLI::IsMember({"pre-rope", "post-rope", "rope-comm"}))
      ->capture_default_str();
  cmd->add_option("--values", o->values,
                  "value codebooks: kmeans (free centroids), additive (b0 + the basis vectors "
                  "the code's bits select: dense aggregation) or residual (A[high half of the "
                  "code] + B[low half], two stages of 2^(b/2) centroids; even b); additive and "
                  "residual are fitted by alternating least squares")
      ->check(CLI::IsMember({"kmeans", "additive", "residual"}))
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
  cmd->add_option("--spill-dir", o->spill_dir,
                  "directory for the per-layer activation spill (default $TMPDIR or /tmp; a "
                  "private subdirectory, removed afterwards, that peaks at the size --in-memory "
                  "would hold in RAM)")
      ->check(CLI::ExistingDirectory);
  cmd->add_flag("--in-memory", o->in_memory,
                "keep every layer's activations in RAM instead of spilling them (same result)");
  cmd->add_option("--synthetic", o->synthetic,
                  "'7b[:TYPE][:layers=N][:kvh=N]': calibrate a 7B-shaped random model (no -m; "
                  "tokens are the text's bytes) to check memory and time at that scale; TYPE "
                  "f32, f16, bf16, q8_0 or q4_0; parts not given come from --weights, --layers, "
                  "--kv-heads; e.g. 7b:q4_0:layers=32");
  cmd->add_option("--layers", o->layers, "layers of the synthetic model")
      ->capture_default_str()
      ->check(CLI::Range(1, 32));
  cmd->add_option("--kv-heads", o->kv_heads, "KV heads of the synthetic model (32: LLaMA-2-7B)")
      ->capture_default_str()
      ->check(CLI::IsMember({1, 2, 4, 8, 16, 32}));
  cmd->add_option("--weights", o->weights,
                  "matrix type of the synthetic model (f32, f16, bf16, q8_0, q4_0)")
      ->capture_default_str()
      ->check(CLI::IsMember({"f32", "f16", "bf16", "q8_0", "q4_0"}));
  cmd->add_flag("--allow-eval-data", o->allow_eval, "allow calibrating on evaluation text");
  cmd->add_flag("-q,--quiet", o->quiet, "no progress output");
  cmd->callback([o] {
    CQKV_CHECK(o->m.model.empty() != o->synthetic.empty(),
               "calibrate: give exactly one of -m MODEL and --synthetic 7b");
    o->c.config = CqConfig::Parse(o->config);
    o->c.key_kind = o->keys == "rope-comm" ? KeyKind::kRopeComm : KeyKind::kKMeans;
    o->c.keys = o->keys == "rope-comm" ? KeyPosition::kPreRope : ParseKeyPosition(o->keys);
    o->c.values = ParseValueKind(o->values);
    ParseTokensSpec(o->tokens, &o->c.n_seqs, &o->c.seq_len);
    if (!o->in_memory) {
      if (o->spill_dir.empty()) {
        std::error_code ec;
        o->spill_dir = std::filesystem::temp_directory_path(ec).string();
        CQKV_CHECK(!ec, "--spill-dir: no temporary directory ($TMPDIR: {}); pass --spill-dir",
                   ec.message());
      }
      o->c.spill_dir = o->spill_dir;
    }
    const std::vector<TextSource> sources = ParseTextSourceList(o->data, "--data");
    if (!o->allow_eval) {
      for (const TextSource& src : sources) RefuseEvaluationText(src);
    }
    std::string text;
    for (const TextSource& src : sources) {
      if (!text.empty()) text += "\n\n";  // as jsonl documents are joined
      text += LoadText(src);
    }
    std::unique_ptr<Model> model;
    std::vector<int32_t> ids;
    const auto t0 = std::chrono::steady_clock::now();
    if (o->synthetic.empty()) {
      model = LoadModelFrom(o->m);
      ids = model->tok().Encode(text, /*add_bos=*/true);
    } else {
      SyntheticSpec spec{o->layers, o->kv_heads, ParseSyntheticWeights(o->weights, "--weights")};
      spec = ParseSyntheticSpec(o->synthetic, spec);
      // Vocabulary 256: each byte of the text is a token.
      model = MakeSyntheticModel(SevenBShape(spec.n_layers, spec.n_kv_heads, 256, o->c.seq_len), 1,
                                 0.02f, spec.weights);
      model->path = spec.Name();
      ids.assign(text.begin(), text.end());
      for (int32_t& id : ids) id &= 0xff;
      fmt::print(stderr, "model: {} (random weights, made in {:.1f} s; peak RSS {:.0f} MiB)\n",
                 model->path,
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
                 PeakRssBytes() / double(1 << 20));
    }
    o->c.description =
        fmt::format("{} ({} x {} tokens, {}, {}, {} values)", o->data, o->c.n_seqs, o->c.seq_len,
                    o->c.fisher ? "fisher" : "uniform", o->keys, o->values);
    ThreadPool pool(o->m.threads);
    ProgressLine progress;
    CalibrationStats stats;
    const CodebookSet set = Calibrate(
        *model, ids, o->c, pool,
        o->quiet ? CalibrationProgress() : CalibrationProgress(std::ref(progress)), &stats);
    SaveCodebooks(set, o->out);
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double peak_rss = PeakRssBytes();
    fmt::print("| layer | K objective | V objective |\n|---|---|---|\n");
    for (int l = 0; l < set.n_layers; ++l) {
      fmt::print("| {} | {:.6g} | {:.6g} |\n", l, set.objective[2 * l], set.objective[2 * l + 1]);
    }
    fmt::print(stderr,
               "wrote {} (CQ-{}, {} keys, {}) in {:.1f} s with {} threads; peak RSS {:.0f} MiB, "
               "spilled {:.1f} MiB (+{:.1f} MiB of layer checkpoints){}\n",
               o->out, set.config.Name(), o->keys, o->c.fisher ? "fisher" : "uniform", secs,
               pool.size(), peak_rss / (1 << 20), stats.spill_bytes / double(1 << 20),
               stats.checkpoint_bytes / double(1 << 20),
               o->in_memory ? " (--in-memory)" : " to " + o->spill_dir);
    if (!o->json.empty()) {
      nlohmann::json j = {{"codebooks", o->out},
                          {"config", set.config.Name()},
                          {"keys", o->keys},
                          {"fisher", o->c.fisher},
                          {"tokens", o->tokens},
                          {"data", o->data},
                          {"model", model->path},
                          {"seconds", secs},
                          {"threads", pool.size()},
                          {"peak_rss_bytes", peak_rss},
                          {"spill_dir", o->in_memory ? "" : o->spill_dir},
                          {"spill_bytes", stats.spill_bytes},
                          {"checkpoint_bytes", stats.checkpoint_bytes},
                          {"objective", set.objective}};
      WriteJson(o->json, j.dump(2));
    }
  });
}

}  // namespace cqkv::tools
