#include "util/escape.h"

#include <fmt/format.h>

namespace cqkv {
namespace {

// Length of the valid UTF-8 sequence starting at s[i] (2..4), or 0 when there is none: overlong
// forms, surrogates and code points above U+10FFFF count as invalid, as in the Unicode standard.
size_t Utf8SequenceAt(std::string_view s, size_t i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  size_t len = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  const auto b1 = static_cast<unsigned char>(s[i + 1]);
  if (b1 < lo || b1 > hi) return 0;
  for (size_t k = 2; k < len; ++k) {
    if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return 0;
  }
  return len;
}

}  // namespace

namespace {

std::string Escape(std::string_view s, size_t max_bytes, bool backslash) {
  const bool cut = s.size() > max_bytes;
  const std::string_view body = cut ? s.substr(0, max_bytes) : s;
  std::string out;
  out.reserve(body.size() + 16);
  for (size_t i = 0; i < body.size();) {
    const auto c = static_cast<unsigned char>(body[i]);
    if (c >= 0x80) {
      const size_t len = Utf8SequenceAt(body, i);
      if (len > 0) {
        out.append(body.substr(i, len));
        i += len;
        continue;
      }
      out += fmt::format("\\x{:02x}", c);
    } else if (c == '\\' && backslash) {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f) {
      out += fmt::format("\\x{:02x}", c);
    } else {
      out += static_cast<char>(c);
    }
    ++i;
  }
  if (cut) out += fmt::format("...({} bytes)", s.size());
  return out;
}

}  // namespace

std::string Escaped(std::string_view s, size_t max_bytes) { return Escape(s, max_bytes, true); }

std::string EscapedLine(std::string_view s, size_t max_bytes) {
  return Escape(s, max_bytes, false);
}

}  // namespace cqkv
