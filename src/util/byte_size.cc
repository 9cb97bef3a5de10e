#include "util/byte_size.h"

#include <cctype>
#include <cmath>
#include <cstdlib>

#include "util/error.h"

namespace cqkv {

int64_t ParseByteSize(const std::string& text, const std::string& what) {
  const char* begin = text.c_str();
  char* end = nullptr;
  const double number = std::strtod(begin, &end);
  CQKV_CHECK(end != begin && std::isdigit(static_cast<unsigned char>(text[0])),
             "{}: '{}' is not a size (e.g. 512MiB, 8GiB, 4096)", what, text);
  std::string unit;
  for (const char* p = end; *p; ++p) unit += static_cast<char>(std::tolower(*p));
  if (!unit.empty() && unit.back() == 'b') unit.pop_back();
  double scale = 0;
  if (unit.empty())
    scale = 1;
  else if (unit == "k")
    scale = 1e3;
  else if (unit == "m")
    scale = 1e6;
  else if (unit == "g")
    scale = 1e9;
  else if (unit == "t")
    scale = 1e12;
  else if (unit == "ki")
    scale = 1024.0;
  else if (unit == "mi")
    scale = 1024.0 * 1024;
  else if (unit == "gi")
    scale = 1024.0 * 1024 * 1024;
  else if (unit == "ti")
    scale = 1024.0 * 1024 * 1024 * 1024;
  CQKV_CHECK(scale > 0, "{}: unknown size unit in '{}' (use B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)",
             what, text);
  const double bytes = number * scale;
  CQKV_CHECK(std::isfinite(bytes) && bytes >= 1 && bytes <= std::ldexp(1.0, 62),
             "{}: size '{}' is out of range [1 byte, 4 EiB]", what, text);
  return static_cast<int64_t>(bytes);
}

}  // namespace cqkv
