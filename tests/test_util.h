// Helpers shared by the unit tests: where the shared models/data live, and a skip when absent.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "util/error.h"

namespace cqkv::testing {

// ../shared beside the checkout (CQKV_SHARED_DIR at configure time), or $CQKV_SHARED.
inline std::string SharedDir() {
  if (const char* env = std::getenv("CQKV_SHARED")) return env;
  return CQKV_SHARED_DIR;
}

inline std::string SharedPath(const std::string& rel) { return SharedDir() + "/" + rel; }

inline bool HaveShared(const std::string& rel) { return std::filesystem::exists(SharedPath(rel)); }

// Runs fn, expecting a cqkv::Error whose message contains every one of `parts`.
template <typename Fn>
void ExpectErrorMentioning(Fn fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "no error thrown";
  } catch (const Error& e) {
    for (const auto& part : parts) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos)
          << "'" << part << "' not in: " << e.what();
    }
  }
}

}  // namespace cqkv::testing

// Skips the current test with a clear message when a shared file is missing.
#define CQKV_REQUIRE_SHARED(rel)                                                       \
  do {                                                                                 \
    if (!::cqkv::testing::HaveShared(rel)) {                                           \
      GTEST_SKIP() << "shared file " << ::cqkv::testing::SharedPath(rel) << " absent"; \
    }                                                                                  \
  } while (0)
