// `cqkv bench-serve`: serving capacity and throughput of KV formats at one KV memory budget. For
// each format, as many sequences as the budget admits at the given context (each holding the
// pages of `ctx` tokens, as the engine's scheduler would need at the end of a request) are
// filled with ctx - gen random cached tokens, then decoded together for `gen` batched steps
// (one LlamaForward::ForwardBatch per step, every weight read once per step).
#include <fmt/core.h>
#include <malloc.h>
#include <nlohmann/json.hpp>

#include <chrono>

#include "bench/harness/attn_bench.h"
#include "loader/loader.h"
#include "model/fingerprint.h"
#include "model/kv_shape.h"
#include "model/llama.h"
#include "model/synthetic.h"
#include "tools/common.h"
#include "util/byte_size.h"
#include "util/error.h"
#include "util/process_stats.h"

namespace cqkv::tools {
namespace {

struct ServeResult {
  std::string format;
  int64_t sequences = 0;
  int64_t pages_per_seq = 0, page_bytes = 0, fixed_bytes = 0;
  int64_t shared_bytes = 0;  // codebooks, charged once to the budget
  double kv_bytes = 0;       // pages, fixed buffers and shared tables held in the budget
  double bits_per_channel = 0;
  double decode_tok_s = 0, tpot_ms = 0, ratio_vs_fp16 = 0;
  double linear_gflops = 0;  // 2 * weights * tokens / step time: the GEMM work rate achieved
  double rss_bytes = 0;
  double sequential_tok_s = 0;  // --sequential: the same sequences decoded one after another
};

struct Opts {
  ModelOptions m;
  std::string synthetic;  // "7b[:TYPE][:layers=N][:kvh=N]" (model/synthetic.h); default 8 KV heads
  int layers = 2;
  int ctx = 4096;
  int gen = 8;
  int page_tokens = 256;
  int64_t max_seqs = 4096;
  std::string kv_memory = "1GiB";
  std::string formats = "fp16,int4-channel,cq:4c8b,cq:8c8b";
  std::string json;
  std::string weights = "f32";  // synthetic model's matrices
  bool sequential = false;
  int Fill() const { return ctx - gen * (sequential ? 2 : 1); }
};

ServeResult RunFormat(const Model& model, const Opts& o, int64_t budget, const AttnFormat& format,
                      ThreadPool& pool) {
  ServeResult r;
  r.format = format.name;
  KvShape shape = KvShapeFor(model.config, o.ctx);
  shape.model_fingerprint = ModelFingerprint(model);
  shape.page_tokens = o.page_tokens;
  auto proto = MakeBenchCache(format, shape, 1);
  r.page_bytes = proto->PageBytes();
  r.fixed_bytes = proto->FixedBytes();
  r.pages_per_seq = proto->PagesFor(o.ctx);
  r.bits_per_channel = proto->BitsPerChannel();
  CQKV_CHECK(r.page_bytes > 0, "bench-serve: format {} does not store its tokens in pages",
             format.name);
  auto pool_pages = std::make_shared<PagePool>(r.page_bytes, budget);
  r.shared_bytes = proto->SharedBytes();
  CQKV_CHECK(pool_pages->TryReserveBytes(r.shared_bytes),
             "bench-serve: {}: the budget cannot hold the shared tables ({} bytes)", format.name,
             r.shared_bytes);
  std::vector<std::unique_ptr<KvCache>> seqs;
  while (static_cast<int64_t>(seqs.size()) < o.max_seqs) {
    auto c = proto->NewSibling(pool_pages);
    if (!c->TryAdmit(o.ctx)) break;
    seqs.push_back(std::move(c));
  }
  r.sequences = static_cast<int64_t>(seqs.size());
  r.kv_bytes = static_cast<double>(pool_pages->used()) * r.page_bytes +
               static_cast<double>(pool_pages->reserved_bytes());
  if (seqs.empty()) return r;
  fmt::print(stderr, "bench-serve: {}: {} sequences admitted, filling {} tokens each\n",
             format.name, r.sequences, o.Fill());
  pool.ParallelFor(r.sequences, 1, [&](int64_t b0, int64_t b1, int) {
    for (int64_t b = b0; b < b1; ++b) FillRandom(*seqs[b], o.Fill(), 11 + b);
  });
  r.rss_bytes = CurrentRssBytes();
  LlamaForward fwd(model, pool);
  const int64_t V = model.config.vocab_size;
  std::vector<float> logits(static_cast<size_t>(r.sequences * V));
  std::vector<int32_t> toks(static_cast<size_t>(r.sequences));
  std::vector<BatchItem> items(static_cast<size_t>(r.sequences));
  auto step = [&](int s) {
    for (int64_t b = 0; b < r.sequences; ++b) {
      toks[b] = static_cast<int32_t>((b * 31 + s) % V);
      items[b] = {seqs[b].get(), std::span<const int32_t>(&toks[b], 1),
                  Mat(logits.data() + b * V, 1, V)};
    }
    fwd.ForwardBatch(items);
  };
  step(0);  // warm-up: scratch buffers, weight pages
  const auto t0 = std::chrono::steady_clock::now();
  for (int s = 1; s < o.gen; ++s) step(s);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const int steps = o.gen - 1;
  r.tpot_ms = secs / steps * 1e3;
  r.decode_tok_s = static_cast<double>(r.sequences) * steps / secs;
  const ModelConfig& c = model.config;
  // Every layer's matrices plus the classifier, once per token.
  const double linear = static_cast<double>(c.n_layers) * c.LayerMatrixWeights() +
                        static_cast<double>(c.vocab_size) * c.dim;
  r.linear_gflops = 2.0 * linear * r.sequences * steps / secs / 1e9;
  if (o.sequential) {
    // The baseline batching removes: every sequence's step reads all weights again.
    const auto s0 = std::chrono::steady_clock::now();
    for (int s = 1; s < o.gen; ++s) {
      for (int64_t b = 0; b < r.sequences; ++b) {
        fwd.Forward(std::span<const int32_t>(&toks[b], 1), *seqs[b],
                    Mat(logits.data() + b * V, 1, V));
      }
    }
    const double ss = std::chrono::duration<double>(std::chrono::steady_clock::now() - s0).count();
    r.sequential_tok_s = static_cast<double>(r.sequences) * steps / ss;
  }
  return r;
}

}  // namespace

void RegisterBenchServe(CLI::App& app) {
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = app.add_subcommand(
      "bench-serve", "sequences admitted and batched decode tokens/s of KV formats at a KV budget");
  cmd->footer(
      "Each sequence holds the pages of --ctx tokens; ctx - gen of them are random K/V appended "
      "directly (speed only: they may exceed the model's trained context), then all sequences "
      "decode --gen tokens together. cq:<c>c<b>b uses random codebooks (same speed as learned). "
      "linear_gflops = 2 x linear weights x tokens / time: how close a step is to being "
      "compute-bound by its matrix products.");
  cmd->add_option("-m,--model", o->m.model, "model file (or --synthetic)");
  cmd->add_option("--synthetic", o->synthetic,
                  "'7b[:TYPE][:layers=N][:kvh=N]': a 7B-shaped random model (no -m); TYPE f32, "
                  "f16, bf16, q8_0 or q4_0; parts not given come from --weights, --layers and 8 "
                  "KV heads; e.g. 7b:q4_0:layers=2");
  cmd->add_option("--weights", o->weights,
                  "matrix type of the synthetic model (f32, f16, bf16, q8_0, q4_0)")
      ->capture_default_str();
  cmd->add_flag("--sequential", o->sequential,
                "also decode the same sequences one after another (Forward per sequence) and "
                "report the batch's speed-up over that");
  cmd->add_option("--layers", o->layers, "layers of the synthetic model")
      ->capture_default_str()
      ->check(CLI::Range(1, 32));
  cmd->add_option("--ctx", o->ctx, "context per sequence (prompt + generated)")
      ->capture_default_str()
      ->check(CLI::Range(2, 1 << 20));
  cmd->add_option("--gen", o->gen, "decode steps timed (the first is a warm-up)")
      ->capture_default_str()
      ->check(CLI::Range(2, 4096));
  cmd->add_option("--kv-memory", o->kv_memory, "KV budget, e.g. 512MiB, 8GiB")
      ->capture_default_str();
  cmd->add_option("--page-tokens", o->page_tokens, "tokens per KV page (multiple of 256)")
      ->capture_default_str()
      ->check(kPageTokens);
  cmd->add_option("--max-seqs", o->max_seqs, "admit at most this many sequences")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 30));
  cmd->add_option("--formats", o->formats, "comma-separated --kv specs")->capture_default_str();
  AddThreadsOption(cmd, o->m.threads);
  cmd->add_option("--json", o->json, "write the results as JSON")->check(kNonEmptyPath);
  cmd->callback([o] {
    CQKV_CHECK(o->m.model.empty() != o->synthetic.empty(),
               "bench-serve: give exactly one of -m MODEL and --synthetic 7b");
    CQKV_CHECK(o->Fill() >= 1, "bench-serve: --gen {} leaves no room for cached tokens in --ctx {}",
               o->gen, o->ctx);
    const int64_t budget = ParseByteSize(o->kv_memory, "--kv-memory");
    std::unique_ptr<Model> model;
    std::string name = o->m.model;
    if (o->synthetic.empty()) {
      model = LoadModel(o->m.model);
    } else {
      SyntheticSpec spec{o->layers, 8, ParseSyntheticWeights(o->weights, "--weights")};
      spec = ParseSyntheticSpec(o->synthetic, spec);
      model = MakeSyntheticModel(SevenBShape(spec.n_layers, spec.n_kv_heads, 256, o->ctx), 1, 0.02f,
                                 spec.weights);
      name = spec.Name();
    }
    std::vector<AttnFormat> formats = ParseAttnFormats(o->formats);
    if (formats.empty() || formats[0].name != "fp16") {
      formats.insert(formats.begin(), ParseAttnFormat("fp16"));  // the ratio's baseline first
    }
    ThreadPool pool(o->m.threads);
    std::vector<ServeResult> results;
    for (const AttnFormat& f : formats) {
      malloc_trim(0);  // the previous format's pages go back to the OS before we measure RSS
      results.push_back(RunFormat(*model, *o, budget, f, pool));
      const ServeResult& r = results.back();
      fmt::print(stderr, "bench-serve: {}: {} sequences, {:.1f} tok/s\n", f.name, r.sequences,
                 r.decode_tok_s);
    }
    const ServeResult& base = results[0];
    for (ServeResult& r : results) {
      r.ratio_vs_fp16 = base.decode_tok_s > 0 ? r.decode_tok_s / base.decode_tok_s : 0;
    }
    fmt::print("bench-serve: {} | ctx {} | KV budget {} ({} bytes) | {} threads | gen {}\n\n", name,
               o->ctx, o->kv_memory, budget, pool.size(), o->gen);
    fmt::print(
        "| format | bits/ch | seqs | seqs vs fp16 | decode tok/s | vs fp16 | TPOT ms | "
        "KV MiB | linear GFLOP/s | RSS MiB |\n|---|---|---|---|---|---|---|---|---|---|\n");
    nlohmann::json arr = nlohmann::json::array();
    for (const ServeResult& r : results) {
      const double seq_ratio =
          base.sequences > 0 ? static_cast<double>(r.sequences) / base.sequences : 0;
      fmt::print(
          "| {} | {:.2f} | {} | {:.2f}x | {:.1f} | {:.2f}x | {:.2f} | {:.1f} | {:.1f} | "
          "{:.0f} |\n",
          r.format, r.bits_per_channel, r.sequences, seq_ratio, r.decode_tok_s, r.ratio_vs_fp16,
          r.tpot_ms, r.kv_bytes / (1 << 20), r.linear_gflops, r.rss_bytes / (1 << 20));
      arr.push_back(
          {{"format", r.format},
           {"ctx", o->ctx},
           {"kv_memory_bytes", budget},
           {"sequences", r.sequences},
           {"sequences_vs_fp16", seq_ratio},
           {"decode_tok_s", r.decode_tok_s},
           {"ratio_vs_fp16", r.ratio_vs_fp16},
           {"tpot_ms", r.tpot_ms},
           {"kv_bytes", r.kv_bytes},
           {"page_bytes", r.page_bytes},
           {"pages_per_sequence", r.pages_per_seq},
           {"fixed_bytes_per_sequence", r.fixed_bytes},
           {"shared_bytes", r.shared_bytes},
           {"bits_per_channel", r.bits_per_channel},
           {"linear_gflops", r.linear_gflops},
           {"rss_bytes", r.rss_bytes},
           {"sequential_tok_s", r.sequential_tok_s},
           {"batch_speedup", r.sequential_tok_s > 0 ? r.decode_tok_s / r.sequential_tok_s : 0.0}});
    }
    if (o->sequential) {
      fmt::print(
          "\n| format | batched tok/s | one-after-another tok/s | speed-up |\n|---|---|---|---|\n");
      for (const ServeResult& r : results) {
        fmt::print("| {} | {:.1f} | {:.1f} | {:.2f}x |\n", r.format, r.decode_tok_s,
                   r.sequential_tok_s, r.decode_tok_s / std::max(1e-9, r.sequential_tok_s));
      }
    }
    fmt::print("\npeak RSS of the process: {:.0f} MiB\n", PeakRssBytes() / (1 << 20));
    if (!o->json.empty()) {
      nlohmann::json j = {{"model", name},
                          {"ctx", o->ctx},
                          {"gen", o->gen},
                          {"threads", pool.size()},
                          {"page_tokens", o->page_tokens},
                          {"results", arr}};
      WriteJson(o->json, j.dump(2));
    }
  });
}

}  // namespace cqkv::tools
