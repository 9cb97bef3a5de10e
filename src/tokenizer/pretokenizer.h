// The table of byte-level BPE pre-tokenizer families: which regex steps cut text into words for
// each GGUF `tokenizer.ggml.pre` value, as llama.cpp's llm_tokenizer_bpe defines them, and how a
// Hugging Face tokenizer.json pre_tokenizer maps onto the same families.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace cqkv {

struct PreTokenizerFamily {
  std::string_view name;                   // canonical tokenizer.ggml.pre value
  std::vector<std::string_view> aliases;   // other tokenizer.ggml.pre values with the same rules
  std::vector<std::string_view> patterns;  // regex steps, each re-splitting the previous pieces
  bool ignore_merges = false;              // llama.cpp: a word that is itself a token is not merged
  bool add_bos = false;  // llama.cpp's BOS default when tokenizer.ggml.add_bos_token is absent
};

const std::vector<PreTokenizerFamily>& PreTokenizerFamilies();

// The family of a tokenizer.ggml.pre value. An empty value is llama.cpp's "default" (it warns
// that quality degrades); an unknown one throws cqkv::Error naming `where`, the value and the
// supported values, as llama.cpp refuses such a file too.
const PreTokenizerFamily& FindPreTokenizer(std::string_view pre, std::string_view where);

// The family whose steps are `patterns` (as read from a tokenizer.json), comparing
// case-insensitive contraction groups (?i:'s|...) by meaning; nullptr when none matches.
const PreTokenizerFamily* MatchPreTokenizer(const std::vector<std::string>& patterns);

// GPT-2's word regex, which a Hugging Face ByteLevel step with use_regex applies.
std::string_view Gpt2WordPattern();

}  // namespace cqkv
