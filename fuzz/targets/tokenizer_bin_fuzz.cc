// libFuzzer target fuzz_tokenizer_bin: a llama2.c tokenizer.bin, built into a tokenizer and used.
// (entry "tokenizer_bin" of fuzz/fuzz_entries.cc; seeds: fuzz/make_corpus.py).
#include "fuzz/fuzz_entries.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const cqkv::fuzz::EntryFn entry = cqkv::fuzz::FindEntry("tokenizer_bin");
  return cqkv::fuzz::RunOne(entry, data, size);
}
