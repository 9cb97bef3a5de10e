// libFuzzer target fuzz_data_spec: a --data flag value (ParseTextSource), then LoadText of the file
// it names. (entry "data_spec" of fuzz/fuzz_entries.cc; seeds: fuzz/make_corpus.py).
#include "fuzz/fuzz_entries.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const cqkv::fuzz::EntryFn entry = cqkv::fuzz::FindEntry("data_spec");
  return cqkv::fuzz::RunOne(entry, data, size);
}
