// The zero-shot task files as stored, before any prompt formatting: llm-foundry's local-data JSON
// lines and llama.cpp's 6-lines-per-item HellaSwag text. Parsing only checks shapes and names the
// file, line and field at fault; eval/zeroshot_tasks.h turns records into prompts.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace cqkv {

enum class ZsFileFormat {
  kQueryChoices,         // {"query", "choices": [...], "gold"}: ARC, PIQA, BoolQ, COPA, ...
  kContextOptions,       // {"context_options": [...], "continuation", "gold"}: WinoGrande
  kContextContinuation,  // {"context", "continuation"}: LAMBADA
  kHellaswagText,        // llama.cpp: context, gold label, then 4 endings, one per line
};

struct ZsRecord {
  int64_t line = 0;                  // 1-based line of the item's first line in its file
  std::string context;               // query / context; empty for kContextOptions
  std::vector<std::string> options;  // choices, or WinoGrande's context options
  std::string continuation;          // kContextOptions, kContextContinuation
  int gold = -1;                     // index into options; -1 for kContextContinuation
};

// Parses the first `limit` items of `text` (all when limit < 0). `path` names the file in
// messages: "FILE:LINE: field 'gold' ..." for a malformed item. Blank lines between JSON items
// are skipped; a file without items is an error.
std::vector<ZsRecord> ParseZeroShotRecords(std::string_view text, ZsFileFormat format,
                                           const std::string& path, int64_t limit = -1);

// Reads and parses `path`; throws cqkv::Error naming it when it is missing or unreadable.
std::vector<ZsRecord> LoadZeroShotFile(const std::string& path, ZsFileFormat format,
                                       int64_t limit = -1);

}  // namespace cqkv
