// Evaluation text: raw text files (WikiText-2 raw) as they are, and JSON-lines corpora (C4) as
// their "text" fields joined by blank lines, optionally a range of documents.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cqkv {

struct TextSource {
  std::string path;
  // Document range [doc_begin, doc_end) for .jsonl files; doc_end < 0 means to the end.
  int64_t doc_begin = 0;
  int64_t doc_end = -1;
};

// Parses "FILE" or "FILE:BEGIN:END" (document range, jsonl only). Throws naming the flag value.
TextSource ParseTextSource(const std::string& spec);
// Parses a comma-separated list of such specs ("a.txt,c4.jsonl:0:200"); `flag` names the option
// in errors. Throws on an empty list or an empty item.
std::vector<TextSource> ParseTextSourceList(const std::string& list, const std::string& flag);
// Throws cqkv::Error naming the file when it is missing, empty, or a .jsonl line lacks "text".
std::string LoadText(const TextSource& src);

}  // namespace cqkv
