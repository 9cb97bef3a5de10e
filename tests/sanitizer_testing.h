// Whether the unit tests run in the sanitizer build (CQKV_SANITIZE, cmake/sanitizers.cmake), where
// instrumented code runs several times slower: the slowest equivalence tests pick smaller sizes
// there that still reach every code path they check (`make test` runs the full sizes).
#pragma once

namespace cqkv::testing {

// clang does not define GCC's __SANITIZE_ADDRESS__, hence the build's own definition.
#if defined(__SANITIZE_ADDRESS__) || defined(CQKV_SANITIZE)
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif

}  // namespace cqkv::testing
