// The vocabulary a tokenizer is built from, independent of where it was read (GGUF metadata,
// llama2.c tokenizer.bin or a Hugging Face tokenizer.json).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cqkv {

// Token attributes as GGUF's tokenizer.ggml.token_type stores them.
enum class TokenType : int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

struct Vocab {
  // "llama": SentencePiece-style BPE over scores with byte fallback.
  // "gpt2": byte-level BPE over ranked merges.
  std::string model = "llama";
  std::vector<std::string> tokens;  // token text (SPM uses U+2581 for space; GPT-2 byte-mapped)
  std::vector<float> scores;        // SPM merge priority; empty for gpt2
  std::vector<TokenType> types;     // empty means all normal
  std::vector<std::string> merges;  // gpt2 only: "left right", rank = index
  // gpt2 only: the pre-tokenizer family (GGUF tokenizer.ggml.pre; see pretokenizer.h). Empty is
  // llama.cpp's "default".
  std::string pre;
  // gpt2 only: a pre-tokenized word that is itself a token is emitted whole, unmerged (Llama-3's
  // tokenizer.json model.ignore_merges; llama.cpp sets it for the llama-bpe family).
  bool ignore_merges = false;
  int32_t bos_id = -1;
  int32_t eos_id = -1;
  int32_t unk_id = -1;
  bool add_bos = true;
  bool add_space_prefix = true;  // SPM: prepend a space to the input as SentencePiece does
  std::string chat_template;     // GGUF tokenizer.chat_template (Jinja text), empty when absent
};

}  // namespace cqkv
