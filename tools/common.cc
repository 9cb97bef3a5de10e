#include "tools/common.h"

#include <fmt/core.h>

#include "util/mapped_file.h"

namespace cqkv::tools {

void AddModelOptions(CLI::App* cmd, ModelOptions& o) {
  cmd->add_option("-m,--model", o.model,
                  "model: GGUF file, llama2.c checkpoint or Hugging Face folder (config.json + "
                  "safetensors)")
      ->required()
      ->check(CLI::ExistingPath);
  cmd->add_option("--tokenizer", o.tokenizer,
                  "tokenizer file (llama2.c tokenizer.bin, tokenizer.json or GGUF); default: the "
                  "model's own, or tokenizer.bin beside a llama2.c checkpoint")
      ->check(CLI::ExistingFile);
  cmd->add_option("-t,--threads", o.threads, "worker threads (0 = all cores)")
      ->check(CLI::NonNegativeNumber);
}

std::unique_ptr<Model> LoadModelFrom(const ModelOptions& o) {
  auto model = LoadModel(o.model, o.tokenizer);
  const ModelConfig& c = model->config;
  fmt::print(stderr,
             "model: {} ({}): dim {}, layers {}, heads {}/{} kv, hidden {}, vocab {}, ctx {}\n",
             o.model, model->file_format, c.dim, c.n_layers, c.n_heads, c.n_kv_heads, c.hidden_dim,
             c.vocab_size, c.max_seq_len);
  return model;
}

void WriteJson(const std::string& path, const std::string& json_text) {
  WriteFileAtomic(path, json_text + "\n");
}

}  // namespace cqkv::tools
