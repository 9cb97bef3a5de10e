// `cqkv info`: what a model file holds (configuration, format, tokenizer) and KV-cache sizes.
#include <fmt/core.h>

#include <algorithm>

#include "cqkv/engine.h"
#include "model/llama.h"
#include "tools/common.h"

namespace cqkv::tools {

void RegisterInfo(CLI::App& app) {
  struct Opts {
    ModelOptions m;
    std::string kv = "fp16";
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = app.add_subcommand("info", "describe a model file");
  AddModelOptions(cmd, o->m);
  cmd->add_option("--kv", o->kv, "KV format whose size to report")->capture_default_str();
  cmd->callback([o] {
    auto model = LoadModelFrom(o->m);
    const ModelConfig& c = model->config;
    fmt::print("format        {}\n", model->file_format);
    fmt::print("architecture  {}\n", c.arch);
    fmt::print("dim           {}\nhidden        {}\nlayers        {}\n", c.dim, c.hidden_dim,
               c.n_layers);
    fmt::print("heads         {} (kv {}, head dim {})\n", c.n_heads, c.n_kv_heads, c.head_dim());
    fmt::print("vocab         {}\ncontext       {}\n", c.vocab_size, c.max_seq_len);
    fmt::print("rope          base {} {}{}{}\nrms eps       {}\n", c.rope.freq_base,
               c.rope.type == RopeType::kNorm ? "norm (2i, 2i+1)" : "neox (i, i+d/2)",
               c.rope.freq_scale != 1.0f ? fmt::format(", linear scale {}", c.rope.freq_scale) : "",
               c.rope.freq_factors.empty()
                   ? ""
                   : fmt::format(", {} frequency factors", c.rope.freq_factors.size()),
               c.rms_eps);
    fmt::print("attention     q/k/v bias {}, q/k norm {}\n", c.attn_bias ? "yes" : "no",
               c.qk_norm ? "yes" : "no");
    fmt::print("weights       {} (embedding), {} (layer 0 wq)\n",
               DTypeName(model->weights.tok_embd.type),
               DTypeName(model->weights.layers[0].wq.type));
    fmt::print("tokenizer     {}\n",
               model->tokenizer ? fmt::format("{} ({} tokens)", model->tokenizer->vocab().model,
                                              model->tokenizer->size())
                                : std::string("none"));
    // Sized per token, so a cache of a bounded context tells the size at any context without
    // allocating what a file claims (up to 2^30 positions).
    auto cache = MakeCacheFor(*model, o->kv, std::min(c.max_seq_len, kDefaultMaxContext));
    fmt::print("kv cache      {}: {:.0f} bytes/token, {:.2f} MiB at full context\n", o->kv,
               cache->BytesPerToken(), cache->BytesPerToken() * c.max_seq_len / (1 << 20));
  });
}

}  // namespace cqkv::tools
