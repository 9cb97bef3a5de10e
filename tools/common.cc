#include "tools/common.h"

#include <fmt/core.h>

#include <charconv>
#include <cmath>
#include <limits>

#include "util/atomic_file.h"
#include "util/error.h"
#include "util/escape.h"
#include "util/thread_pool.h"

namespace cqkv::tools {

void AddThreadsOption(CLI::App* cmd, int& threads) {
  const int max = ThreadPool::MaxThreads();
  cmd->add_option("-t,--threads", threads,
                  fmt::format("worker threads (0 = all cores; at most {}, 4 x the cores)", max))
      ->check(CLI::Validator(
          [max](std::string& s) -> std::string {
            int v = 0;
            const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
            if (r.ec != std::errc() || r.ptr != s.data() + s.size() || v < 0 || v > max) {
              return fmt::format(
                  "{} is not a thread count in [0, {}] (4 x the {} hardware threads)", Escaped(s),
                  max, max / 4);
            }
            return "";
          },
          "THREADS"));
}

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
  AddThreadsOption(cmd, o.threads);
}

std::unique_ptr<Model> LoadModelFrom(const ModelOptions& o) {
  auto model = LoadModel(o.model, o.tokenizer);
  const ModelConfig& c = model->config;
  fmt::print(stderr,
             "model: {} ({}): dim {}, layers {}, heads {}/{} kv, hidden {}, vocab {}, ctx {}\n",
             Escaped(o.model), model->file_format, c.dim, c.n_layers, c.n_heads, c.n_kv_heads,
             c.hidden_dim, c.vocab_size, c.max_seq_len);
  return model;
}

void WriteJson(const std::string& path, const std::string& json_text) {
  WriteFileAtomic(path, json_text + "\n");
}

CLI::Validator FiniteRange(double lo, double hi) {
  return CLI::Validator(
      [lo, hi](std::string& s) -> std::string {
        double v = 0;
        const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
        if (r.ec != std::errc() || r.ptr != s.data() + s.size() || !std::isfinite(v) || v < lo ||
            v > hi) {
          return fmt::format("{} is not a number in [{}, {}]", Escaped(s), lo, hi);
        }
        return "";
      },
      fmt::format("NUMBER in [{}, {}]", lo, hi));
}

const CLI::Validator kNonEmptyPath(
    [](std::string& s) -> std::string { return s.empty() ? "an empty file name" : ""; }, "PATH");

const CLI::Validator kPageTokens(
    [](std::string& s) -> std::string {
      int v = 0;
      const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
      if (r.ec != std::errc() || r.ptr != s.data() + s.size() || v < 256 || v > (1 << 20) ||
          v % 256 != 0) {
        return fmt::format("{} is not a multiple of 256 in [256, 1048576]", Escaped(s));
      }
      return "";
    },
    "TOKENS");

std::vector<int32_t> ParseTokenIds(const std::string& text, const std::string& flag) {
  std::vector<int32_t> ids;
  size_t begin = 0;
  for (;;) {
    const size_t end = std::min(text.find(',', begin), text.size());
    const std::string_view item(text.data() + begin, end - begin);
    int32_t id = -1;
    const auto r = std::from_chars(item.data(), item.data() + item.size(), id);
    CQKV_CHECK(
        !item.empty() && r.ec == std::errc() && r.ptr == item.data() + item.size() && id >= 0,
        "{}: '{}' is not a token id (an integer in [0, {}])", flag, Escaped(item),
        std::numeric_limits<int32_t>::max());
    ids.push_back(id);
    if (end == text.size()) break;
    begin = end + 1;
  }
  return ids;
}

void CheckTokenIds(const std::vector<int32_t>& ids, const Model& model, const std::string& flag) {
  for (int32_t id : ids) {
    CQKV_CHECK(id < model.config.vocab_size, "{}: token id {} is outside the vocabulary of {} ({})",
               flag, id, Escaped(model.path), model.config.vocab_size);
  }
}

namespace {

bool IsNegativeNumber(const std::string& s) {
  if (s.size() < 2 || s[0] != '-') return false;
  double v = 0;
  const auto r = std::from_chars(s.data() + 1, s.data() + s.size(), v);
  return (r.ec == std::errc() || r.ec == std::errc::result_out_of_range) &&
         r.ptr == s.data() + s.size();
}

}  // namespace

std::vector<std::string> AttachNegativeNumbers(int argc, char** argv) {
  std::vector<std::string> out;
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    const std::string& prev = out.empty() ? a : out.back();
    const bool after_option = i > 1 && prev.size() >= 2 && prev[0] == '-' &&
                              prev.find('=') == std::string::npos && !IsNegativeNumber(prev);
    if (after_option && IsNegativeNumber(a)) {
      // "--flag" "-1" -> "--flag=-1"; "-n" "-1" -> "-n-1" (CLI11 splits a short option's value).
      out.back() += (prev[1] == '-' ? "=" : "") + a;
      continue;
    }
    out.push_back(std::move(a));
  }
  return out;
}

}  // namespace cqkv::tools
