// llama2.c checkpoints and tokenizer.bin at load (src/loader/llama2c.cc, LoadModel): every
// header field range-checked, the size consistent with the header, a tokenizer.bin that does not
// match the model refused naming both files, and a damaged GGUF described as neither format.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "loader/loader.h"
#include "test_util.h"
#include "util/input_file.h"

namespace cqkv {
namespace {

using testing::ExpectErrorMentioning;

const char* kCkpt = "models/stories260K/model.bin";
const char* kVocab = "models/stories260K/tokenizer.bin";
const char* kGguf = "models/stories260K/stories260K.llamacpp.gguf";

std::string Temp(const std::string& name) { return ::testing::TempDir() + "/llama2c_" + name; }

std::string Write(const std::string& name, const std::string& bytes) {
  const std::string p = Temp(name);
  std::ofstream(p, std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return p;
}

// The checkpoint with header field `field` (0 = dim ... 6 = seq_len) set to `v`.
std::string WithField(const std::string& bytes, int field, int32_t v) {
  std::string b = bytes;
  std::memcpy(b.data() + 4 * field, &v, 4);
  return b;
}

TEST(Llama2c, EveryHeaderFieldIsRangeChecked) {
  CQKV_REQUIRE_SHARED(kCkpt);
  const std::string bytes = ReadFile(testing::SharedPath(kCkpt));
  struct Case {
    int field;
    int32_t value;
    const char* says;
  };
  const Case cases[] = {
      {0, 0, "dim = 0"},
      {0, 1 << 30, "dim = 1073741824"},
      {1, -1, "hidden_dim = -1"},
      {2, 100000, "n_layers = 100000"},
      {3, 0, "n_heads = 0"},
      {4, 1000, "n_kv_heads = 1000"},
      {5, INT32_MIN, "|vocab_size| = 2147483648"},  // -INT32_MIN overflowed before
      {5, 0, "|vocab_size| = 0"},
      {6, 0, "seq_len = 0"},
      {6, INT32_MAX, "seq_len = 2147483647"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.says);
    const std::string p = Write("field.bin", WithField(bytes, c.field, c.value));
    ExpectErrorMentioning([&] { LoadModel(p); }, {p, "llama2.c checkpoint", c.says});
  }
  // Consistent fields that do not match the file's length.
  const std::string p = Write("seq.bin", WithField(bytes, 6, 256));
  ExpectErrorMentioning([&] { LoadModel(p); }, {p, "does not match its header", "trailing"});
  const std::string t = Write("short.bin", bytes.substr(0, bytes.size() - 4));
  ExpectErrorMentioning([&] { LoadModel(t); }, {t, "truncated"});
}

// A GGUF with a damaged magic is neither format; saying "not a llama2.c checkpoint" alone
// misled users into converting a file that only needed re-downloading.
TEST(Llama2c, DamagedGgufMagicSaysNeitherFormat) {
  CQKV_REQUIRE_SHARED(kGguf);
  std::string bytes = ReadFile(testing::SharedPath(kGguf));
  bytes[0] = 'X';
  const std::string p = Write("damaged.gguf", bytes);
  ExpectErrorMentioning([&] { LoadModel(p); }, {p, "neither a GGUF file", "nor a llama2.c"});
}

// llama2.c tokenizer.bin: the first `n` tokens of `bytes` (a whole tokenizer.bin).
std::string FirstTokens(const std::string& bytes, int n) {
  size_t pos = 4;
  for (int i = 0; i < n; ++i) {
    int32_t len = 0;
    std::memcpy(&len, bytes.data() + pos + 4, 4);
    pos += 8 + static_cast<size_t>(len);
  }
  return bytes.substr(0, pos);
}

TEST(Llama2c, TokenizerBinMustMatchTheModelVocabulary) {
  CQKV_REQUIRE_SHARED(kCkpt);
  CQKV_REQUIRE_SHARED(kVocab);
  const std::string model = testing::SharedPath(kCkpt);
  const std::string vocab = ReadFile(testing::SharedPath(kVocab));
  EXPECT_EQ(LoadModel(model, testing::SharedPath(kVocab))->tokenizer->size(), 512);
  const std::string fewer = Write("tokenizer_fewer.bin", FirstTokens(vocab, 500));
  ExpectErrorMentioning([&] { LoadModel(model, fewer); },
                        {"tokenizer_fewer.bin", "500 tokens", model, "vocabulary of 512"});
  // The same check for the tokenizer.bin found beside a checkpoint.
  const std::string dir = Temp("beside");
  std::filesystem::create_directories(dir);
  std::filesystem::copy_file(model, dir + "/model.bin",
                             std::filesystem::copy_options::overwrite_existing);
  std::ofstream(dir + "/tokenizer.bin", std::ios::binary) << FirstTokens(vocab, 300);
  ExpectErrorMentioning([&] { LoadModel(dir + "/model.bin"); },
                        {dir + "/tokenizer.bin", "300 tokens", dir + "/model.bin"});
}

TEST(Llama2c, DevicesAreNotModels) {
  ExpectErrorMentioning([] { LoadModel("/dev/zero"); }, {"/dev/zero", "not a regular file"});
}

}  // namespace
}  // namespace cqkv
