#include "loader/loader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "gguf/gguf.h"
#include "tokenizer/vocab_io.h"
#include "util/error.h"
#include "util/escape.h"

namespace cqkv {
namespace {

// True when `path` starts with "GGUF". Opens without blocking and reads 4 bytes only, so a FIFO
// or device named as a model is refused by the format reader rather than read or waited on.
bool HasGgufMagic(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  CQKV_CHECK(fd >= 0, "{}: cannot open model file: {}", Escaped(path), std::strerror(errno));
  struct stat st {};
  char magic[4] = {};
  const bool regular = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
  const bool ok = regular && ::pread(fd, magic, 4, 0) == 4 && std::memcmp(magic, "GGUF", 4) == 0;
  ::close(fd);
  return ok;
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
  CQKV_CHECK(std::filesystem::exists(path), "{}: model file not found", Escaped(path));
  std::unique_ptr<Model> model;
  std::string llama2c_vocab;  // the tokenizer.bin used, if any
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
        llama2c_vocab = beside.string();
        model->tokenizer = MakeTokenizer(ReadLlama2cVocab(llama2c_vocab));
      }
    }
  }
  if (!tokenizer_path.empty()) {
    model->tokenizer = MakeTokenizer(LoadVocabFile(tokenizer_path));
    if (!HasGgufMagic(tokenizer_path) && !EndsWith(tokenizer_path, ".json") &&
        !LooksLikeJsonObject(tokenizer_path)) {
      llama2c_vocab = tokenizer_path;
    }
  }
  if (model->tokenizer != nullptr) {
    const int64_t n = model->tokenizer->size(), v = model->config.vocab_size;
    const std::string tok = Escaped(tokenizer_path.empty() ? path : tokenizer_path);
    // A tokenizer.bin lists exactly the model's tokens (llama2.c's export writes one entry per
    // row); fewer means it belongs to another model. Other formats may leave padding rows.
    CQKV_CHECK(llama2c_vocab.empty() || n == v,
               "tokenizer {} has {} tokens but model {} has a vocabulary of {}: they do not "
               "belong together",
               Escaped(llama2c_vocab), n, Escaped(path), v);
    CQKV_CHECK(n <= v, "{}: tokenizer has {} tokens but model {} has a vocabulary of {}", tok, n,
               Escaped(path), v);
  }
  return model;
}

}  // namespace cqkv
