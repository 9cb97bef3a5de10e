// Model and vocabulary loading. LoadModel detects the file format (GGUF by its magic, else a
// llama2.c checkpoint).
#pragma once

#include <memory>
#include <string>

#include "loader/loader.h"
#include "model/model.h"
#include "tokenizer/vocab.h"

namespace cqkv {

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
