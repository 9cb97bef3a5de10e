#include "eval/dataset.h"

#include <nlohmann/json.hpp>

#include <charconv>
#include <sstream>

#include "util/error.h"
#include "util/escape.h"
#include "util/input_file.h"

namespace cqkv {
namespace {

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

TextSource ParseTextSource(const std::string& spec) {
  TextSource src;
  src.path = spec;
  // "file.jsonl:1800:1900" selects documents; a plain path may itself contain ':' only when it
  // exists as given.
  const auto last = spec.rfind(':');
  if (last != std::string::npos && last > 0) {
    const auto mid = spec.rfind(':', last - 1);
    if (mid != std::string::npos) {
      const std::string a = spec.substr(mid + 1, last - mid - 1), b = spec.substr(last + 1);
      const bool numeric = !a.empty() && a.find_first_not_of("0123456789") == std::string::npos &&
                           b.find_first_not_of("0123456789") == std::string::npos;
      if (numeric) {
        src.path = spec.substr(0, mid);
        auto number = [&spec](const std::string& t) {
          int64_t v = 0;
          const auto r = std::from_chars(t.data(), t.data() + t.size(), v);
          CQKV_CHECK(r.ec == std::errc() && r.ptr == t.data() + t.size(),
                     "--data {}: document number '{}' is out of range", Escaped(spec), t);
          return v;
        };
        src.doc_begin = number(a);
        src.doc_end = b.empty() ? -1 : number(b);
        CQKV_CHECK(src.doc_end < 0 || src.doc_end > src.doc_begin,
                   "--data {}: empty document range", spec);
      }
    }
  }
  return src;
}

std::vector<TextSource> ParseTextSourceList(const std::string& list, const std::string& flag) {
  std::vector<TextSource> out;
  size_t begin = 0;
  while (true) {
    const size_t comma = list.find(',', begin);
    const std::string item =
        list.substr(begin, comma == std::string::npos ? std::string::npos : comma - begin);
    CQKV_CHECK(!item.empty(), "{} {}: empty item in the comma-separated list", flag, Escaped(list));
    out.push_back(ParseTextSource(item));
    if (comma == std::string::npos) return out;
    begin = comma + 1;
  }
}

std::string LoadText(const TextSource& src) {
  std::string raw = ReadInputFile(src.path, kMaxTextInputBytes, "--data");
  if (!EndsWith(src.path, ".jsonl")) {
    CQKV_CHECK(src.doc_begin == 0 && src.doc_end < 0, "{}: a document range needs a .jsonl file",
               src.path);
    CQKV_CHECK(!raw.empty(), "{}: data file is empty", src.path);
    return raw;
  }
  std::istringstream in(raw);
  std::string line, text;
  int64_t doc = 0, line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty()) continue;
    if (doc >= src.doc_begin && (src.doc_end < 0 || doc < src.doc_end)) {
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(line);
      } catch (const nlohmann::json::exception& e) {
        Fail("{}:{}: not valid JSON: {}", src.path, line_no, e.what());
      }
      CQKV_CHECK(j.is_object() && j.contains("text") && j["text"].is_string(),
                 "{}:{}: JSON line has no string field \"text\"", src.path, line_no);
      if (!text.empty()) text += "\n\n";
      text += j["text"].get<std::string>();
    }
    ++doc;
  }
  CQKV_CHECK(!text.empty(), "{}: no text in documents [{}, {})", src.path, src.doc_begin,
             src.doc_end < 0 ? doc : src.doc_end);
  return text;
}

}  // namespace cqkv
