#include "eval/dataset.h"

#include <nlohmann/json.hpp>

#include <charconv>
#include <sstream>

#include "util/error.h"
#include "util/mapped_file.h"

namespace cqkv {
namespace {

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// A document index of a --data range (digits only, checked by the caller).
int64_t DocIndex(const std::string& digits, const std::string& spec) {
  int64_t v = 0;
  const auto r = std::from_chars(digits.data(), digits.data() + digits.size(), v);
  CQKV_CHECK(r.ec == std::errc() && r.ptr == digits.data() + digits.size(),
             "--data {}: document index {} out of range", spec, digits);
  return v;
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
        src.doc_begin = DocIndex(a, spec);
        src.doc_end = b.empty() ? -1 : DocIndex(b, spec);
        CQKV_CHECK(src.doc_end < 0 || src.doc_end > src.doc_begin,
                   "--data {}: empty document range", spec);
      }
    }
  }
  return src;
}

std::string LoadText(const TextSource& src) {
  std::string raw = ReadFile(src.path);
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
