// Model and vocabulary loading. LoadModel detects the format: a directory is a Hugging Face
// checkpoint folder, a file is GGUF by its magic, else a llama2.c checkpoint.
#pragma once

#include <memory>
#include <string>

#include "loader/loader.h"
#include "model/model.h"
#include "tokenizer/vocab.h"

namespace cqkv {

// Loads `path`. `tokenizer_path` overrides the vocabulary: a llama2.c tokenizer.bin, a Hugging
// Face tokenizer.json or a GGUF file with tokenizer.ggml.* metadata. When empty, GGUF models use
// their own metadata, llama2.c checkpoints look for tokenizer.bin beside the checkpoint and
// Hugging Face folders read their tokenizer.json (an error when present but unreadable: pass
// `tokenizer_path` to use another).
// Throws cqkv::Error naming the file and what is wrong.
std::unique_ptr<Model> LoadModel(const std::string& path, const std::string& tokenizer_path = "");

// Format-specific loaders used by LoadModel (tokenizer left null).
std::unique_ptr<Model> LoadGgufModel(const std::string& path);
std::unique_ptr<Model> LoadLlama2cModel(const std::string& path);
// A folder with config.json and model.safetensors (or model.safetensors.index.json + shards);
// LLaMA/Mistral architectures, F32/F16/BF16 weights, viewed in the mapped files.
std::unique_ptr<Model> LoadHfModel(const std::string& dir);

// Reads a vocabulary from any supported tokenizer file (see LoadModel).
Vocab LoadVocabFile(const std::string& path);

}  // namespace cqkv
