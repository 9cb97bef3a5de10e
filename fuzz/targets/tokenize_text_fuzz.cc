// libFuzzer target fuzz_tokenize_text: arbitrary text encoded with each real vocabulary of
// ../shared (SPM and byte-level BPE) and decoded back (entry "tokenize_text" of
// fuzz/fuzz_entries.cc; seeds: fuzz/make_corpus.py).
#include "fuzz/fuzz_entries.h"

// Builds the tokenizers before fuzzing starts: loading the 128k-token vocabularies under the
// sanitizers takes longer than the per-input timeout allows.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  cqkv::fuzz::FindEntry("tokenize_text")("");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const cqkv::fuzz::EntryFn entry = cqkv::fuzz::FindEntry("tokenize_text");
  return cqkv::fuzz::RunOne(entry, data, size);
}
