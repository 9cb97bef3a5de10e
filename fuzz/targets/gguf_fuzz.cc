// libFuzzer target fuzz_gguf: GgufFile::Open on the bytes as a file, then every metadata value and
// tensor read. (entry "gguf" of fuzz/fuzz_entries.cc; seeds: fuzz/make_corpus.py).
#include "fuzz/fuzz_entries.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const cqkv::fuzz::EntryFn entry = cqkv::fuzz::FindEntry("gguf");
  return cqkv::fuzz::RunOne(entry, data, size);
}
