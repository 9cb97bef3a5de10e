// UTF-8 boundaries for text released piece by piece (streamed completions): tokens may end inside
// a multi-byte character, which must not reach a client until its last byte arrives.
#pragma once

#include <cstddef>
#include <string_view>

namespace cqkv {

// Length of the longest prefix of `s` that does not end inside a multi-byte UTF-8 character: a
// cut-off lead byte and its continuation bytes are left out. Invalid bytes (a stray continuation
// byte, an impossible lead) are not held back: they cannot be completed.
size_t CompleteUtf8Prefix(std::string_view s);

}  // namespace cqkv
