#include "eval/zeroshot_data.h"

#include <nlohmann/json.hpp>

#include <cassert>
#include <charconv>

#include "util/error.h"
#include "util/escape.h"
#include "util/input_file.h"

namespace cqkv {
namespace {

using nlohmann::json;

// Where an item came from, for messages: "FILE:LINE".
struct Where {
  const std::string& path;
  int64_t line;
};

std::string At(const Where& w) { return Escaped(w.path) + ":" + std::to_string(w.line); }

const json& Field(const json& j, const char* name, const Where& w) {
  const auto it = j.find(name);
  CQKV_CHECK(it != j.end(), "{}: field '{}' is missing", At(w), name);
  return *it;
}

std::string StringField(const json& j, const char* name, const Where& w) {
  const json& f = Field(j, name, w);
  CQKV_CHECK(f.is_string(), "{}: field '{}' must be a string", At(w), name);
  return f.get<std::string>();
}

std::vector<std::string> StringList(const json& j, const char* name, const Where& w) {
  const json& f = Field(j, name, w);
  CQKV_CHECK(f.is_array() && f.size() >= 2, "{}: field '{}' must be a list of at least 2 strings",
             At(w), name);
  std::vector<std::string> out;
  for (const json& e : f) {
    CQKV_CHECK(e.is_string(), "{}: field '{}' must hold only strings", At(w), name);
    out.push_back(e.get<std::string>());
  }
  return out;
}

int GoldField(const json& j, size_t n_options, const Where& w) {
  const json& f = Field(j, "gold", w);
  CQKV_CHECK(f.is_number_integer(), "{}: field 'gold' must be an integer", At(w));
  const int64_t g = f.get<int64_t>();
  CQKV_CHECK(g >= 0 && g < static_cast<int64_t>(n_options),
             "{}: field 'gold' is {}, outside [0, {}) (the number of options)", At(w), g,
             n_options);
  return static_cast<int>(g);
}

ZsRecord ParseJsonItem(std::string_view line, ZsFileFormat format, const Where& w) {
  json j;
  try {
    j = json::parse(line);
  } catch (const json::exception& e) {
    Fail("{}: not a JSON object ({})", At(w), e.what());
  }
  CQKV_CHECK(j.is_object(), "{}: not a JSON object", At(w));
  ZsRecord r;
  r.line = w.line;
  switch (format) {
    case ZsFileFormat::kQueryChoices:
      r.context = StringField(j, "query", w);
      r.options = StringList(j, "choices", w);
      r.gold = GoldField(j, r.options.size(), w);
      break;
    case ZsFileFormat::kContextOptions:
      r.options = StringList(j, "context_options", w);
      r.continuation = StringField(j, "continuation", w);
      r.gold = GoldField(j, r.options.size(), w);
      break;
    case ZsFileFormat::kContextContinuation:
      r.context = StringField(j, "context", w);
      r.continuation = StringField(j, "continuation", w);
      CQKV_CHECK(!r.continuation.empty(), "{}: field 'continuation' is empty", At(w));
      break;
    case ZsFileFormat::kHellaswagText:
      assert(false);
  }
  return r;
}

// Splits into lines (without '\n'; a final line without one counts, a "\r" before '\n' is
// dropped).
std::vector<std::string_view> Lines(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t b = 0;
  while (b < text.size()) {
    size_t e = text.find('\n', b);
    if (e == std::string_view::npos) e = text.size();
    std::string_view l = text.substr(b, e - b);
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    lines.push_back(l);
    b = e + 1;
  }
  return lines;
}

// llama.cpp's hellaswag_score format: line 1 the context, line 2 the gold ending's index, lines
// 3-6 the four endings.
std::vector<ZsRecord> ParseHellaswagText(std::string_view text, const std::string& path,
                                         int64_t limit) {
  const auto lines = Lines(text);
  CQKV_CHECK(lines.size() % 6 == 0,
             "{}: {} lines, not a multiple of 6 (HellaSwag text: context, gold label, 4 endings "
             "per item)",
             Escaped(path), lines.size());
  std::vector<ZsRecord> out;
  for (size_t i = 0; i < lines.size() && (limit < 0 || static_cast<int64_t>(out.size()) < limit);
       i += 6) {
    ZsRecord r;
    r.line = static_cast<int64_t>(i) + 1;
    r.context = std::string(lines[i]);
    const std::string_view g = lines[i + 1];
    int v = -1;
    const auto res = std::from_chars(g.data(), g.data() + g.size(), v);
    const Where w{path, r.line + 1};
    CQKV_CHECK(res.ec == std::errc() && res.ptr == g.data() + g.size() && v >= 0 && v < 4,
               "{}: gold label '{}' is not 0, 1, 2 or 3", At(w), Escaped(g));
    r.gold = v;
    for (size_t k = 0; k < 4; ++k) r.options.emplace_back(lines[i + 2 + k]);
    CQKV_CHECK(!r.context.empty(), "{}: empty context line", At(Where{path, r.line}));
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace

std::vector<ZsRecord> ParseZeroShotRecords(std::string_view text, ZsFileFormat format,
                                           const std::string& path, int64_t limit) {
  std::vector<ZsRecord> out;
  if (format == ZsFileFormat::kHellaswagText) {
    out = ParseHellaswagText(text, path, limit);
  } else {
    const auto lines = Lines(text);
    for (size_t i = 0; i < lines.size(); ++i) {
      if (limit >= 0 && static_cast<int64_t>(out.size()) >= limit) break;
      if (lines[i].find_first_not_of(" \t") == std::string_view::npos) continue;
      out.push_back(ParseJsonItem(lines[i], format, Where{path, static_cast<int64_t>(i) + 1}));
    }
  }
  CQKV_CHECK(!out.empty() || limit == 0, "{}: no items", Escaped(path));
  return out;
}

std::vector<ZsRecord> LoadZeroShotFile(const std::string& path, ZsFileFormat format,
                                       int64_t limit) {
  const std::string text = ReadInputFile(path, kMaxTextInputBytes, "task file (--data-dir)");
  return ParseZeroShotRecords(text, format, path, limit);
}

}  // namespace cqkv
