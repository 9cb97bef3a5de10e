// GGUF structural consistency (issue 12): data offsets as llama.cpp requires them, tensor name
// lengths, escaped file strings, compact arrays and the metadata memory budget.
#include <gtest/gtest.h>

#include <string>

#include "gguf/gguf.h"
#include "gguf/gguf_testing.h"
#include "util/error.h"

namespace cqkv {
namespace {

using namespace gguf_testing;

// Two 4-float tensors; the second at `second_offset` (the sound value is 32).
std::string TwoTensors(uint64_t second_offset, uint32_t second_type = 0) {
  return Bytes()
      .Header(3, 2, 0)
      .Tensor("a.weight", 4, 0, 0)
      .Tensor("b.weight", second_type == 1 ? 8 : 4, second_type, second_offset)
      .Pad(32)
      .Zeros(64)
      .str();
}

// Offsets that alias, overlap or skip bytes loaded before and computed with another tensor's
// data; llama.cpp requires each offset to be the running padded size.
TEST(GgufStructureTest, OffsetsMustBeTheRunningPaddedSize) {
  const std::string path = TempPath("offsets.gguf");
  WriteBytes(path, TwoTensors(32));
  EXPECT_EQ(GgufFile::Open(path)->tensors().at(1).offset, 32u);
  WriteBytes(path, TwoTensors(0));  // aliases a.weight
  ExpectOpenError(path, {"'b.weight'", "offset 0 differs from 32", "overlaps, aliases"});
  WriteBytes(path, TwoTensors(64, 0));  // a gap
  ExpectOpenError(path, {"'b.weight'", "offset 64 differs from 32"});
  // The first tensor must start the data section.
  WriteBytes(path, Bytes().Header(3, 1, 0).Tensor("late", 4, 0, 32).Pad(32).Zeros(64).str());
  ExpectOpenError(path, {"'late'", "offset 32 differs from 0"});
}

// A type or shape shrunk in place keeps every offset valid only for the last tensor; the bytes
// it no longer covers are trailing data.
TEST(GgufStructureTest, TrailingDataAfterTheLastTensorIsRefused) {
  const std::string path = TempPath("trailing.gguf");
  // b.weight as F16 (8 elements = 16 bytes) where 32 bytes of F32 were.
  WriteBytes(path, Bytes()
                       .Header(3, 2, 0)
                       .Tensor("a.weight", 4, 0, 0)
                       .Tensor("b.weight", 8, 1, 32)
                       .Pad(32)
                       .Zeros(64 + 32)
                       .str());
  ExpectOpenError(path, {"trailing data"});
  WriteBytes(path, TwoTensors(32, 1));  // the same, padded exactly: fine
  EXPECT_EQ(GgufFile::Open(path)->tensors().at(1).nbytes, 16u);
}

TEST(GgufStructureTest, TensorNamesShorterThanGgmlMaxName) {
  const std::string path = TempPath("names.gguf");
  const std::string ok(63, 'n');
  WriteBytes(path, Bytes().Header(3, 1, 0).Tensor(ok, 4, 0, 0).Pad(32).Zeros(16).str());
  EXPECT_EQ(GgufFile::Open(path)->tensors().at(0).name, ok);
  WriteBytes(path,
             Bytes().Header(3, 1, 0).Tensor(std::string(64, 'n'), 4, 0, 0).Pad(32).Zeros(16).str());
  ExpectOpenError(path, {"tensor 0", "name of 64 bytes", "at most 63"});
  // A 1 MB name is refused from its length alone, and never quoted whole.
  WriteBytes(path,
             Bytes().Header(3, 1, 0).Tensor(std::string(1 << 20, 'x'), 4, 0, 0).Zeros(16).str());
  ExpectOpenError(path, {"name of 1048576 bytes"});
  GgufWriter w;
  const float data[4] = {};
  ExpectError([&] { w.AddTensor(std::string(64, 'w'), DType::kF32, {4}, data); },
              {"64 bytes", "GGML_MAX_NAME"});
}

// Strings from the file are quoted escaped: a NUL or newline in a key cannot cut or forge lines.
TEST(GgufStructureTest, FileStringsAreEscapedInMessages) {
  const std::string path = TempPath("escape.gguf");
  using namespace std::string_literals;
  WriteBytes(path, Bytes()
                       .Header(3, 0, 2)
                       .KvU32("a\0b\ncqkv: error: x"s, 1)
                       .KvU32("a\0b\ncqkv: error: x"s, 2)
                       .str());
  try {
    GgufFile::Open(path);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\0'), std::string::npos) << msg;
    EXPECT_NE(msg.find("'a\\x00b\\ncqkv: error: x'"), std::string::npos) << msg;
  }
}

// Numeric arrays cost their size in the file, not ~100 bytes per element: a 4 MiB array of
// uint8 fits a 5 MiB budget (per-element values would need ~400 MiB), a budget too small for it
// is a clean error, and so is a string array of many empty strings beyond it.
TEST(GgufStructureTest, ArraysAreCompactAndMetadataHasABudget) {
  const std::string path = TempPath("big_array.gguf");
  const uint64_t n = uint64_t{4} << 20;
  Bytes b;
  b.Header(3, 0, 1).Str("big").Put<uint32_t>(9).Put<uint32_t>(0).Put<uint64_t>(n).Zeros(n);
  WriteBytes(path, b.str());
  GgufLimits roomy;
  roomy.max_metadata_bytes = uint64_t{5} << 20;
  auto f = GgufFile::Open(path, roomy);
  EXPECT_EQ(f->ArrayLength("big"), n);
  EXPECT_EQ(f->GetIntArray("big").size(), n);
  GgufLimits tight;
  tight.max_metadata_bytes = uint64_t{2} << 20;
  ExpectError([&] { GgufFile::Open(path, tight); }, {path, "2 MiB memory budget", "array"});

  Bytes s;
  s.Header(3, 0, 1).Str("strs").Put<uint32_t>(9).Put<uint32_t>(8).Put<uint64_t>(1 << 20);
  for (int i = 0; i < (1 << 20); ++i) s.Put<uint64_t>(0);
  WriteBytes(path, s.str());
  GgufLimits strings_fit;  // 8 bytes per string: its end offset, as its length in the file
  strings_fit.max_metadata_bytes = uint64_t{10} << 20;
  EXPECT_EQ(GgufFile::Open(path, strings_fit)->GetStringArray("strs").size(), 1u << 20);
  ExpectError([&] { GgufFile::Open(path, tight); }, {"memory budget"});
}

}  // namespace
}  // namespace cqkv
