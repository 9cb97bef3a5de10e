// libFuzzer target fuzz_openai_request: a /v1/completions or /v1/chat/completions request body,
// parsed, its chat rendered with every template family.
// (entry "openai_request" of fuzz/fuzz_entries.cc; seeds: fuzz/make_corpus.py).
#include "fuzz/fuzz_entries.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const cqkv::fuzz::EntryFn entry = cqkv::fuzz::FindEntry("openai_request");
  return cqkv::fuzz::RunOne(entry, data, size);
}
