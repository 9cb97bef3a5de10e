// Reading vocabularies from the files they ship in: GGUF tokenizer.ggml.* metadata, llama2.c
// tokenizer.bin and Hugging Face tokenizer.json (byte-level BPE).
#pragma once

#include <string>

#include "tokenizer/vocab.h"

namespace cqkv {

class GgufFile;

// Throws cqkv::Error naming the file/key when the vocabulary is missing or malformed.
Vocab VocabFromGguf(const GgufFile& gguf);
// llama2.c format: int32 max_token_length, then per token: float score, int32 len, bytes.
// Token ids 0,1,2 are <unk>,<s>,</s>; "<0xNN>" pieces are byte tokens.
Vocab ReadLlama2cVocab(const std::string& path);
// Hugging Face tokenizer.json with a BPE model (GPT-2 byte-level).
Vocab ReadHfTokenizerJson(const std::string& path);

}  // namespace cqkv
