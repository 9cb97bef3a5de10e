// The one error type of cqkv. User-facing problems (bad files, flags, data) throw cqkv::Error
// with a message naming the file, tensor or flag at fault; broken internal invariants use assert.
#pragma once

#include <fmt/format.h>

#include <string>

#include "cqkv/error.h"

namespace cqkv {

template <typename... Args>
[[noreturn]] void Fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace cqkv

// Throws cqkv::Error with a formatted message when `cond` is false.
#define CQKV_CHECK(cond, ...)               \
  do {                                      \
    if (!(cond)) ::cqkv::Fail(__VA_ARGS__); \
  } while (0)
