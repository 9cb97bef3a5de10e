// Quoting strings that come from files or requests inside error messages. A NUL would cut the
// message short and a newline would forge a second "cqkv: error:" line, so every message that
// quotes a file's name, key, token or field goes through Escaped().
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace cqkv {

// `s` with backslash, control bytes (\x00-\x1f, \x7f) and bytes that are not part of valid UTF-8
// written as C escapes (\\, \n, \r, \t, \xNN); printable ASCII and valid UTF-8 are kept. Longer
// than `max_bytes` input is cut and marked "...(N bytes)" so a 1 MB name cannot flood a log.
std::string Escaped(std::string_view s, size_t max_bytes = 256);

// Escaped() for a whole message that may already quote escaped strings: the same, except that
// backslashes stay as they are (so "\n" in a quoted name is not doubled). The result is always
// one line.
std::string EscapedLine(std::string_view s, size_t max_bytes = 4096);

}  // namespace cqkv
