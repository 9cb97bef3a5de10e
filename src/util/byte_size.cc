#include "util/byte_size.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <limits>
#include <string>

#include "util/error.h"

namespace cqkv {
namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Bytes per unit, 0 for an unknown unit.
double UnitBytes(std::string_view unit) {
  const std::string u = Lower(unit);
  struct Unit {
    const char* name;
    double bytes;
  };
  static constexpr Unit kUnits[] = {
      {"", 1},       {"b", 1},        {"k", 0x1p10},   {"kib", 0x1p10}, {"kb", 1e3},
      {"m", 0x1p20}, {"mib", 0x1p20}, {"mb", 1e6},     {"g", 0x1p30},   {"gib", 0x1p30},
      {"gb", 1e9},   {"t", 0x1p40},   {"tib", 0x1p40}, {"tb", 1e12},
  };
  for (const Unit& k : kUnits) {
    if (u == k.name) return k.bytes;
  }
  return 0;
}

}  // namespace

int64_t ParseByteSize(std::string_view text, std::string_view what) {
  auto bad = [&](std::string_view why) {
    Fail("{}: '{}' is not a size ({}; e.g. 1048576, 512MiB, 8GiB, 1.5GB)", what, text, why);
  };
  size_t i = 0;
  while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
  const size_t num_begin = i;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.'))
    ++i;
  const std::string_view number = text.substr(num_begin, i - num_begin);
  if (number.empty()) bad(text.empty() ? "empty" : "no number first");
  while (i < text.size() && text[i] == ' ') ++i;
  size_t end = text.size();
  while (end > i && std::isspace(static_cast<unsigned char>(text[end - 1]))) --end;
  const std::string_view unit = text.substr(i, end - i);
  const double mult = UnitBytes(unit);
  if (mult == 0) bad(fmt::format("unknown unit '{}'", unit));

  if (number.find('.') == std::string_view::npos) {
    uint64_t n = 0;
    const auto [p, ec] = std::from_chars(number.data(), number.data() + number.size(), n);
    if (ec != std::errc() || p != number.data() + number.size()) bad("too large");
    const double bytes = static_cast<double>(n) * mult;
    if (bytes >= 0x1p63) bad("too large");
    // Exact integer arithmetic where the unit is an integer (every unit is).
    return static_cast<int64_t>(n) * static_cast<int64_t>(mult);
  }
  if (mult == 1) bad("a fraction of a byte");
  double v = 0;
  const auto [p, ec] = std::from_chars(number.data(), number.data() + number.size(), v);
  if (ec != std::errc() || p != number.data() + number.size()) bad("malformed number");
  const double bytes = std::round(v * mult);
  if (!std::isfinite(bytes) || bytes >= 0x1p63) bad("too large");
  return static_cast<int64_t>(bytes);
}

}  // namespace cqkv
