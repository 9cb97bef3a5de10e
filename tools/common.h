// Options shared by the cqkv subcommands (model, tokenizer, threads, KV format) and the
// registration hooks of each subcommand, one file per subcommand in tools/.
#pragma once

#include <CLI/CLI.hpp>

#include <memory>
#include <string>

#include "loader/loader.h"

namespace cqkv::tools {

struct ModelOptions {
  std::string model;
  std::string tokenizer;
  int threads = 0;  // 0: all cores
};

// Adds --model (required), --tokenizer, -t/--threads to `cmd`.
void AddModelOptions(CLI::App* cmd, ModelOptions& o);
// Loads the model named by the options, printing a one-line summary to stderr.
std::unique_ptr<Model> LoadModelFrom(const ModelOptions& o);
// Writes a JSON document atomically (temp file + rename).
void WriteJson(const std::string& path, const std::string& json_text);

void RegisterInfo(CLI::App& app);
void RegisterTokenize(CLI::App& app);
void RegisterLogits(CLI::App& app);
void RegisterPerplexity(CLI::App& app);
void RegisterGenerate(CLI::App& app);
void RegisterConvert(CLI::App& app);
void RegisterCalibrate(CLI::App& app);
void RegisterKvGrads(CLI::App& app);
void RegisterBenchAttn(CLI::App& app);
void RegisterBenchServe(CLI::App& app);
void RegisterServe(CLI::App& app);
void RegisterDumpTensor(CLI::App& app);

}  // namespace cqkv::tools
