// Options shared by the cqkv subcommands (model, tokenizer, threads, KV format), the checks every
// numeric and path flag goes through, and the registration hooks of each subcommand, one file
// per subcommand in tools/.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "loader/loader.h"

namespace cqkv::tools {

struct ModelOptions {
  std::string model;
  std::string tokenizer;
  int threads = 0;  // 0: all cores
};

// Adds --model (required), --tokenizer, -t/--threads to `cmd`.
void AddModelOptions(CLI::App* cmd, ModelOptions& o);
// Adds -t/--threads: 0 (all cores) up to ThreadPool::MaxThreads().
void AddThreadsOption(CLI::App* cmd, int& threads);
// Loads the model named by the options, printing a one-line summary to stderr.
std::unique_ptr<Model> LoadModelFrom(const ModelOptions& o);
// Writes a JSON document atomically (util/atomic_file.h).
void WriteJson(const std::string& path, const std::string& json_text);

// Validators: a finite number in [lo, hi] (CLI::Range lets nan through), and a non-empty path
// for output files (-o '').
CLI::Validator FiniteRange(double lo, double hi);
extern const CLI::Validator kNonEmptyPath;
// --page-tokens: a positive multiple of 256 (the decode token block), at most 2^20.
extern const CLI::Validator kPageTokens;

// Parses "1,2,3": every item a decimal integer in [0, 2^31), nothing else ("1x" is refused).
// Throws cqkv::Error naming `flag` and the item.
std::vector<int32_t> ParseTokenIds(const std::string& text, const std::string& flag);
// Throws naming `flag` when an id is outside the model's vocabulary.
void CheckTokenIds(const std::vector<int32_t>& ids, const Model& model, const std::string& flag);

// Lets "-n -1" reach the option as a value (CLI11 2.1 takes "-1" for an option name and reports
// something unrelated): a negative number following an option is attached to it.
std::vector<std::string> AttachNegativeNumbers(int argc, char** argv);

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
void RegisterEvalTasks(CLI::App& app);

}  // namespace cqkv::tools
