// libFuzzer target fuzz_gguf_vocab: a GGUF file's tokenizer.ggml.* vocabulary, built into a
// tokenizer and used. (entry "gguf_vocab" of fuzz/fuzz_entries.cc; seeds: fuzz/make_corpus.py).
#include "fuzz/fuzz_entries.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const cqkv::fuzz::EntryFn entry = cqkv::fuzz::FindEntry("gguf_vocab");
  return cqkv::fuzz::RunOne(entry, data, size);
}
