// A loaded model: configuration, weight views, tokenizer and the storage that keeps them alive.
// LoadModel detects the file format (GGUF by its magic, else a llama2.c checkpoint).
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

// Loads `path`. `tokenizer_path` overrides the vocabulary: a llama2.c tokenizer.bin, a Hugging
// Face tokenizer.json or a GGUF file with tokenizer.ggml.* metadata. When empty, GGUF models use
// their own metadata and llama2.c checkpoints look for tokenizer.bin beside the checkpoint.
// Throws cqkv::Error naming the file and what is wrong.
std::unique_ptr<Model> LoadModel(const std::string& path, const std::string& tokenizer_path = "");

// Format-specific loaders used by LoadModel (tokenizer left null).
std::unique_ptr<Model> LoadGgufModel(const std::string& path);
std::unique_ptr<Model> LoadLlama2cModel(const std::string& path);

// Reads a vocabulary from any supported tokenizer file (see LoadModel).
Vocab LoadVocabFile(const std::string& path);

}  // namespace cqkv
