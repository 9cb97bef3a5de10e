// libFuzzer target fuzz_kv_spec: ParseKvSpec on the bytes as a --kv flag value.
// (entry "kv_spec" of fuzz/fuzz_entries.cc; seeds: fuzz/make_corpus.py).
#include "fuzz/fuzz_entries.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const cqkv::fuzz::EntryFn entry = cqkv::fuzz::FindEntry("kv_spec");
  return cqkv::fuzz::RunOne(entry, data, size);
}
