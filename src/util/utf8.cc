#include "util/utf8.h"

namespace cqkv {

size_t CompleteUtf8Prefix(std::string_view s) {
  const size_t n = s.size();
  for (size_t back = 1; back <= 4 && back <= n; ++back) {
    const auto c = static_cast<unsigned char>(s[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: look further back
    const size_t len = c < 0x80             ? 1
                       : (c & 0xE0) == 0xC0 ? 2
                       : (c & 0xF0) == 0xE0 ? 3
                       : (c & 0xF8) == 0xF0 ? 4
                                            : 1;  // invalid lead: pass it on
    return back < len ? n - back : n;
  }
  return n;  // only continuation bytes at the end: not ours to hold
}

}  // namespace cqkv
