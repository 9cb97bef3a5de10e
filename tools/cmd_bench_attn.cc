// `cqkv bench-attn`: decode-attention speed of KV formats on one layer of random caches, with
// GB/s of cache bytes read, the ratio to fp16 and a STREAM-like read bound from the same run.
#include <fmt/core.h>

#include "bench/harness/attn_bench.h"
#include "tools/common.h"
#include "util/error.h"

namespace cqkv::tools {

void RegisterBenchAttn(CLI::App& app) {
  struct Opts {
    AttnBenchOptions b;
    std::string formats = "fp16,int4-channel,cq:4c8b,cq:8c8b";
    std::string json;
    int threads = 0;
    double stream_mib = 1024;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = app.add_subcommand(
      "bench-attn", "time decode attention of KV formats against fp16 (one layer, random caches)");
  cmd->footer(
      "One query per sequence over `ctx` cached tokens of random K/V; cq:<c>c<b>b uses random "
      "codebooks. GB/s = bytes_per_token(1 layer) * ctx * batch / seconds; the STREAM-like read "
      "bandwidth is measured in the same run. When all formats' caches fit 4 GiB together their "
      "rounds alternate and each ratio is the median of per-round ratios to fp16.");
  cmd->add_option("--ctx", o->b.ctx, "cached tokens per sequence")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 30));
  cmd->add_option("--batch", o->b.batch, "sequences, decoded as one batch (one query each)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 30));
  cmd->add_option("--heads", o->b.n_heads, "query heads")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 30));
  cmd->add_option("--kv-heads", o->b.n_kv_heads, "KV heads (8: Mistral-7B, 32: LLaMA-2-7B)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 30));
  cmd->add_option("--head-dim", o->b.head_dim, "channels per head")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 30));
  cmd->add_option("--formats", o->formats,
                  "comma-separated KV formats (any --kv spec; cq:<c>c<b>b = random codebooks)")
      ->capture_default_str();
  AddThreadsOption(cmd, o->threads);
  cmd->add_option("--reps", o->b.reps, "timed rounds per format (median reported)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 30));
  cmd->add_option("--stream-mib", o->stream_mib, "buffer of the read-bandwidth kernel (MiB)")
      ->capture_default_str()
      ->check(FiniteRange(1, 1 << 20));
  cmd->add_flag("--warm", o->b.warm,
                "keep caches warm between rounds (default: flush the LLC first, as in a real "
                "decode step, where each layer's KV cache is read once between weight reads)");
  cmd->add_option("--json", o->json, "write the results as JSON")->check(kNonEmptyPath);
  cmd->callback([o] {
    o->b.formats = ParseAttnFormats(o->formats);
    o->b.stream_bytes = static_cast<size_t>(o->stream_mib * 1024 * 1024);
    ThreadPool pool(o->threads);
    const AttnBenchReport report = RunAttnBench(
        o->b, pool, [](const std::string& line) { fmt::print(stderr, "bench-attn: {}\n", line); });
    fmt::print("{}", AttnBenchMarkdown(report));
    if (!o->json.empty()) WriteJson(o->json, AttnBenchJson(report));
  });
}

}  // namespace cqkv::tools
