// The zero-shot tasks cqkv knows (PIQA, ARC, WinoGrande, HellaSwag, BoolQ, COPA, OpenBookQA,
// SIQA, LAMBADA), where their file lives under the data folder, and how a record becomes
// lm-evaluation-harness style requests: a context and a continuation that starts with the
// target delimiter " ". Each task's exact prompt is spelled out in its `prompt` line.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "eval/zeroshot_data.h"

namespace cqkv {

enum class ZsScoring {
  kChoice,    // argmax over choices of log P(choice | context) (acc, and acc_norm if reported)
  kPartial,   // WinoGrande: argmax over context options of log P(shared continuation | option)
  kLastWord,  // LAMBADA: all continuation tokens greedy (acc) and perplexity
};

struct ZsTask {
  std::string_view name;
  std::string_view file;  // under the data folder
  ZsFileFormat format;
  ZsScoring scoring;
  bool acc_norm;                  // the harness reports length-normalised accuracy for it
  std::string_view query_suffix;  // appended to the stored query to make the context
  std::string_view prompt;        // the prompt, as documentation (--list-tasks, README)
};

// One scored alternative: log P(continuation | context).
struct ZsRequest {
  std::string context;
  std::string continuation;  // starts with the target delimiter " "
  int64_t norm_len = 1;      // characters (UTF-8 code points) of the choice without delimiter
};

struct ZsItem {
  int64_t line = 0;  // in the task's file
  std::vector<ZsRequest> requests;
  int gold = -1;  // index into requests; -1 for kLastWord
};

std::span<const ZsTask> ZeroShotTasks();
// Throws cqkv::Error naming `name` and listing the known tasks.
const ZsTask& FindZeroShotTask(std::string_view name);
// "piqa,arc_easy": each name once, in the given order; "all" is every task but hellaswag_small.
std::vector<const ZsTask*> ParseZeroShotTaskList(std::string_view csv);

// lm-evaluation-harness's HellaSwag text clean-up: strip, " [title]" -> ". ", drop "[...]",
// "  " -> " ".
std::string HellaswagPreprocess(std::string_view text);
// UTF-8 code points of `s` (the length Python's len() gives, which the harness divides by).
int64_t CodePoints(std::string_view s);

// The requests of one record of `task`.
ZsItem FormatZeroShotItem(const ZsTask& task, const ZsRecord& record);
// Loads the first `limit` items (all when < 0) of `task` from `data_dir`.
std::vector<ZsItem> LoadZeroShotTask(const ZsTask& task, const std::string& data_dir,
                                     int64_t limit = -1);

}  // namespace cqkv
