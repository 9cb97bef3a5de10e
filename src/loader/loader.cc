#include "loader/loader.h"

#include <cstring>
#include <filesystem>
#include <fstream>

#include "gguf/gguf.h"
#include "tokenizer/vocab_io.h"
#include "util/error.h"

namespace cqkv {
namespace {

bool HasGgufMagic(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  CQKV_CHECK(in.good(), "{}: cannot open model file", path);
  char magic[4] = {};
  in.read(magic, 4);
  return in.gcount() == 4 && std::memcmp(magic, "GGUF", 4) == 0;
}

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// A tokenizer.json under another name: '{' then '"' (whitespace allowed around them). A llama2.c
// tokenizer.bin opens with a little-endian int32 max_token_length, so even a length of 123 ('{')
// is followed by zero bytes, not a quote.
bool LooksLikeJsonObject(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  auto next = [&in] {
    char c = 0;
    while (in.get(c) && (c == ' ' || c == '\n' || c == '\r' || c == '\t')) {
    }
    return in ? c : '\0';
  };
  return next() == '{' && next() == '"';
}

}  // namespace

Vocab LoadVocabFile(const std::string& path) {
  CQKV_CHECK(std::filesystem::exists(path), "{}: tokenizer file not found", path);
  if (HasGgufMagic(path)) return VocabFromGguf(*GgufFile::Open(path));
  if (EndsWith(path, ".json") || LooksLikeJsonObject(path)) return ReadHfTokenizerJson(path);
  return ReadLlama2cVocab(path);
}

std::unique_ptr<Model> LoadModel(const std::string& path, const std::string& tokenizer_path) {
  CQKV_CHECK(std::filesystem::exists(path), "{}: model file not found", path);
  std::unique_ptr<Model> model;
  if (std::filesystem::is_directory(path)) {
    model = LoadHfModel(path);
    const auto json = std::filesystem::path(path) / "tokenizer.json";
    if (tokenizer_path.empty() && std::filesystem::exists(json)) {
      try {
        model->tokenizer = MakeTokenizer(ReadHfTokenizerJson(json.string()));
      } catch (const Error& e) {
        Fail("{} (pass --tokenizer to use another vocabulary)", e.what());
      }
    }
  } else if (HasGgufMagic(path)) {
    model = LoadGgufModel(path);
    if (tokenizer_path.empty()) {
      auto gguf = GgufFile::Open(path);
      if (gguf->Has("tokenizer.ggml.tokens"))
        model->tokenizer = MakeTokenizer(VocabFromGguf(*gguf));
    }
  } else {
    model = LoadLlama2cModel(path);
    if (tokenizer_path.empty()) {
      const auto beside = std::filesystem::path(path).parent_path() / "tokenizer.bin";
      if (std::filesystem::exists(beside)) {
        model->tokenizer = MakeTokenizer(ReadLlama2cVocab(beside.string()));
      }
    }
  }
  if (!tokenizer_path.empty()) model->tokenizer = MakeTokenizer(LoadVocabFile(tokenizer_path));
  if (model->tokenizer != nullptr) {
    CQKV_CHECK(model->tokenizer->size() <= model->config.vocab_size,
               "{}: tokenizer has {} tokens but model {} has a vocabulary of {}",
               tokenizer_path.empty() ? path : tokenizer_path, model->tokenizer->size(), path,
               model->config.vocab_size);
  }
  return model;
}

}  // namespace cqkv
