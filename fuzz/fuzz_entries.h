// What each libFuzzer target feeds its bytes to: one function per reader, driving it the way a
// user's file, flag or HTTP request reaches it. Shared by the targets (fuzz/targets/) and by the
// regression test that replays their findings (tests/fuzz/fuzz_regressions_test.cc).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace cqkv::fuzz {

// A rejected input throws cqkv::Error and nothing else; returning means the input was accepted.
using EntryFn = void (*)(std::string_view bytes);

struct Entry {
  const char* name;  // the target's name: fuzz_<name>, corpus folder <name>
  EntryFn run;
};

// Every target, in a fixed order.
const std::vector<Entry>& Entries();
// The entry called `name`; throws cqkv::Error for an unknown one.
EntryFn FindEntry(const std::string& name);

// libFuzzer's body for every target: cqkv::Error is the expected way to reject an input, so it
// is swallowed; any other exception escapes and libFuzzer reports it (as it does crashes,
// sanitizer reports and leaks).
int RunOne(EntryFn fn, const uint8_t* data, size_t size);

}  // namespace cqkv::fuzz
