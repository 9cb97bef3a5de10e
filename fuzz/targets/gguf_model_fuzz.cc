// libFuzzer target fuzz_gguf_model: LoadGgufModel on the bytes as a GGUF model file.
// (entry "gguf_model" of fuzz/fuzz_entries.cc; seeds: fuzz/make_corpus.py).
#include "fuzz/fuzz_entries.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const cqkv::fuzz::EntryFn entry = cqkv::fuzz::FindEntry("gguf_model");
  return cqkv::fuzz::RunOne(entry, data, size);
}
