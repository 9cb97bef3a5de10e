// libFuzzer target fuzz_llama2c: LoadLlama2cModel on the bytes as a llama2.c checkpoint.
// (entry "llama2c" of fuzz/fuzz_entries.cc; seeds: fuzz/make_corpus.py).
#include "fuzz/fuzz_entries.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const cqkv::fuzz::EntryFn entry = cqkv::fuzz::FindEntry("llama2c");
  return cqkv::fuzz::RunOne(entry, data, size);
}
