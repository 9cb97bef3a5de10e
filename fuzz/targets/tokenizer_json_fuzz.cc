// libFuzzer target fuzz_tokenizer_json: a Hugging Face tokenizer.json, built into a tokenizer and
// used. (entry "tokenizer_json" of fuzz/fuzz_entries.cc; seeds: fuzz/make_corpus.py).
#include "fuzz/fuzz_entries.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const cqkv::fuzz::EntryFn entry = cqkv::fuzz::FindEntry("tokenizer_json");
  return cqkv::fuzz::RunOne(entry, data, size);
}
