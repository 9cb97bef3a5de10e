// A loaded model: configuration, weight views, tokenizer and the storage that keeps them alive.
// Loaders (loader/loader.h) build one from a GGUF file or a llama2.c checkpoint.
#pragma once

#include <memory>
#include <string>

#include "model/config.h"
#include "model/weights.h"
#include "tokenizer/tokenizer.h"

namespace cqkv {

struct Model {
  std::string path;
  std::string file_format;  // "gguf" or "llama2c"
  ModelConfig config;
  ModelWeights weights;
  std::unique_ptr<Tokenizer> tokenizer;  // null when no vocabulary could be found
  std::shared_ptr<const void> storage;   // owns the mapped file(s) the weights point into

  // Throws cqkv::Error naming the model when it has no tokenizer.
  const Tokenizer& tok() const;
};

}  // namespace cqkv
