// Hyper-parameters of a Hugging Face checkpoint folder, read from its config.json. Only the
// architectures the forward pass computes exactly are accepted; anything else (another
// architecture, RoPE scaling other than linear/llama3, biases, another activation) is refused
// with the key named.
#pragma once

#include <string>

#include "model/config.h"

namespace cqkv {

struct HfConfig {
  std::string architecture;          // config.json "architectures"[0], e.g. "LlamaForCausalLM"
  ModelConfig model;                 // rope_type is kNeox: HF keeps Q/K rows in rotate-half order
  bool tie_word_embeddings = false;  // lm_head.weight absent, the classifier is embed_tokens
};

// Reads and checks `path` (a config.json). Throws cqkv::Error naming the file and key.
HfConfig ReadHfConfig(const std::string& path);

}  // namespace cqkv
