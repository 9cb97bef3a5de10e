// libFuzzer target fuzz_codebook: LoadCodebooks on the bytes as a .cqcb codebook file.
// (entry "codebook" of fuzz/fuzz_entries.cc; seeds: fuzz/make_corpus.py).
#include "fuzz/fuzz_entries.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const cqkv::fuzz::EntryFn entry = cqkv::fuzz::FindEntry("codebook");
  return cqkv::fuzz::RunOne(entry, data, size);
}
