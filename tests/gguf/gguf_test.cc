#include "gguf/gguf.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "gguf/gguf_testing.h"
#include "kernels/dequant.h"
#include "util/error.h"
#include "util/fp16.h"
#include "util/mapped_file.h"

namespace cqkv {
namespace {

namespace fs = std::filesystem;
using namespace gguf_testing;

// One value of every type, including an empty array and arrays nested two deep.
GgufWriter AllTypesWriter() {
  GgufWriter w;
  w.Set("general.architecture", GgufValue::Str("llama"));
  w.Set("t.u8", GgufValue{GgufType::kUint8, {}, uint64_t{200}});
  w.Set("t.i8", GgufValue{GgufType::kInt8, {}, int64_t{-100}});
  w.Set("t.u16", GgufValue{GgufType::kUint16, {}, uint64_t{65000}});
  w.Set("t.i16", GgufValue{GgufType::kInt16, {}, int64_t{-32000}});
  w.Set("t.u32", GgufValue::U32(4000000000u));
  w.Set("t.i32", GgufValue::I32(-2000000000));
  w.Set("t.f32", GgufValue::F32(0.1f));
  w.Set("t.bool", GgufValue::Bool(true));
  w.Set("t.str", GgufValue::Str(std::string("h\xc3\xa9llo\0world", 12)));
  w.Set("t.u64", GgufValue::U64(18000000000000000000ull));
  w.Set("t.i64", GgufValue{GgufType::kInt64, {}, int64_t{-9000000000000000000}});
  w.Set("t.f64", GgufValue{GgufType::kFloat64, {}, 3.141592653589793});
  w.Set("t.strs", GgufValue::StrArray({"a", "", "<0x0A>", "\xe2\x96\x81the"}));
  w.Set("t.f32s", GgufValue::F32Array({1.5f, -2.25f, 1e-7f}));
  w.Set("t.i32s", GgufValue::I32Array({1, -2, 3}));
  w.Set("t.empty", GgufValue::I32Array({}));
  w.Set("t.nested",
        GgufValue{GgufType::kArray, GgufType::kArray,
                  std::vector<GgufValue>{GgufValue::I32Array({1, 2}), GgufValue::I32Array({}),
                                         GgufValue::I32Array({3})}});
  w.Set("t.nested_strs", GgufValue{GgufType::kArray, GgufType::kArray,
                                   std::vector<GgufValue>{GgufValue::StrArray({"x", "yz"})}});
  w.Set("t.u8s", GgufValue{GgufType::kArray, GgufType::kUint8,
                           std::vector<GgufValue>{GgufValue{GgufType::kUint8, {}, uint64_t{7}}}});
  w.Set("t.bools",
        GgufValue{GgufType::kArray, GgufType::kBool,
                  std::vector<GgufValue>{GgufValue::Bool(false), GgufValue::Bool(true)}});
  return w;
}

TEST(GgufTest, MetadataRoundTripEveryType) {
  const std::string path = TempPath("meta.gguf");
  GgufWriter w = AllTypesWriter();
  w.Set("t.u32", GgufValue::U32(4000000000u));  // replacing keeps the key's position
  w.Write(path);
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  auto f = GgufFile::Open(path);
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->alignment(), 32u);
  EXPECT_TRUE(f->tensors().empty());
  ASSERT_EQ(f->metadata().size(), 21u);
  EXPECT_EQ(f->metadata()[5].first, "t.u32");

  EXPECT_EQ(f->GetString("general.architecture"), "llama");
  EXPECT_EQ(f->GetInt("t.u8"), 200);
  EXPECT_EQ(f->GetInt("t.i8"), -100);
  EXPECT_EQ(f->GetInt("t.u16"), 65000);
  EXPECT_EQ(f->GetInt("t.i16"), -32000);
  EXPECT_EQ(f->GetInt("t.u32"), 4000000000LL);
  EXPECT_EQ(f->GetInt("t.i32"), -2000000000);
  EXPECT_EQ(f->GetFloat("t.f32"), static_cast<double>(0.1f));
  EXPECT_TRUE(f->GetBool("t.bool"));
  EXPECT_EQ(f->GetString("t.str"), std::string("h\xc3\xa9llo\0world", 12));
  EXPECT_EQ(std::get<uint64_t>(f->Find("t.u64")->value), 18000000000000000000ull);
  EXPECT_EQ(f->GetInt("t.i64"), -9000000000000000000LL);
  EXPECT_EQ(f->GetFloat("t.f64"), 3.141592653589793);
  EXPECT_EQ(f->GetFloat("t.i32"), -2e9);  // integers widen to floats on request
  EXPECT_EQ(f->GetStringArray("t.strs"),
            (std::vector<std::string>{"a", "", "<0x0A>", "\xe2\x96\x81the"}));
  EXPECT_EQ(f->GetFloatArray("t.f32s"), (std::vector<float>{1.5f, -2.25f, 1e-7f}));
  EXPECT_EQ(f->GetIntArray("t.i32s"), (std::vector<int64_t>{1, -2, 3}));
  EXPECT_TRUE(f->GetIntArray("t.empty").empty());
  EXPECT_EQ(f->GetIntArray("t.u8s"), (std::vector<int64_t>{7}));

  const GgufValue* nested = f->Find("t.nested");
  ASSERT_NE(nested, nullptr);
  EXPECT_EQ(nested->type, GgufType::kArray);
  EXPECT_EQ(nested->array_type, GgufType::kArray);
  const auto& outer = std::get<std::vector<GgufValue>>(nested->value);
  ASSERT_EQ(outer.size(), 3u);
  EXPECT_EQ(outer[0].array_type, GgufType::kInt32);
  EXPECT_EQ(outer[0].array_size(), 2u);
  EXPECT_EQ(std::get<int64_t>(outer[2].ArrayElement(0).value), 3);
  const GgufValue* ns = f->Find("t.nested_strs");
  EXPECT_EQ(std::get<std::string>(ns->ArrayElement(0).ArrayElement(1).value), "yz");
  // Arrays of scalars and strings are held compactly, whatever their length.
  EXPECT_TRUE(std::holds_alternative<GgufArray>(f->Find("t.strs")->value));
  EXPECT_TRUE(std::holds_alternative<GgufArray>(outer[0].value));
  EXPECT_EQ(f->ArrayLength("t.strs"), 4u);
  EXPECT_EQ(f->ArrayLength("t.empty"), 0u);
  EXPECT_EQ(f->ArrayLength("t.nested"), 3u);
  ExpectError([&] { f->ArrayLength("t.u8"); }, {"t.u8", "expected an array"});
  ExpectError([&] { f->ArrayLength("missing"); }, {"missing metadata key 'missing'"});

  // Defaults apply only when absent.
  EXPECT_EQ(f->GetInt("missing", 7), 7);
  EXPECT_EQ(f->GetInt("t.u8", 7), 200);
  EXPECT_EQ(f->GetFloat("missing", 2.5), 2.5);
  EXPECT_FALSE(f->GetBool("missing", false));
  EXPECT_EQ(f->GetString("missing", "x"), "x");
  EXPECT_FALSE(f->Has("missing"));
}

TEST(GgufTest, ReadBackRewritesIdenticalBytes) {
  // Widths survive the read, so copying every key into a new writer reproduces the file.
  const std::string a = TempPath("rw_a.gguf"), b = TempPath("rw_b.gguf");
  AllTypesWriter().Write(a);
  auto f = GgufFile::Open(a);
  GgufWriter w;
  for (const auto& [k, v] : f->metadata()) w.Set(k, v);
  w.Write(b);
  EXPECT_EQ(ReadFile(a), ReadFile(b));
}

TEST(GgufTest, GetterErrorsNameKeyAndFile) {
  const std::string path = TempPath("getters.gguf");
  AllTypesWriter().Write(path);
  auto f = GgufFile::Open(path);
  ExpectError([&] { f->GetInt("no.such.key"); }, {path, "no.such.key", "missing"});
  ExpectError([&] { f->GetString("t.u32"); }, {path, "t.u32", "uint32", "string"});
  ExpectError([&] { f->GetInt("t.str"); }, {path, "t.str", "integer"});
  ExpectError([&] { f->GetInt("t.f32"); }, {path, "t.f32", "float32"});
  ExpectError([&] { f->GetBool("t.u8"); }, {path, "t.u8", "bool"});
  ExpectError([&] { f->GetInt("t.u64"); }, {path, "t.u64", "too large"});
  ExpectError([&] { f->GetStringArray("t.f32s"); }, {path, "t.f32s", "array of float32"});
  ExpectError([&] { f->GetIntArray("t.strs"); }, {path, "t.strs", "array of string"});
  ExpectError([&] { f->GetFloatArray("t.str"); }, {path, "t.str", "array"});
  ExpectError(
      [&] {
        f->GetString("t.str", "default");
        f->GetString("t.u8", "d");
      },
      {path, "t.u8"});
}

struct TestTensor {
  std::string name;
  DType type;
  std::vector<int64_t> ne;
  std::vector<uint8_t> bytes;
};

std::vector<TestTensor> MakeTensors() {
  std::vector<TestTensor> ts;
  auto add = [&](std::string name, DType type, std::vector<int64_t> ne) {
    int64_t n = 1;
    for (int64_t d : ne) n *= d;
    std::vector<float> x(n);
    for (int64_t i = 0; i < n; ++i) x[i] = std::sin(0.37f * i + ts.size()) * 3.0f;
    std::vector<uint8_t> bytes(DTypeRowBytes(type, ne[0]) * (n / ne[0]));
    for (int64_t r = 0; r < n / ne[0]; ++r) {
      uint8_t* row = bytes.data() + r * DTypeRowBytes(type, ne[0]);
      const float* xr = x.data() + r * ne[0];
      for (int64_t i = 0; i < ne[0]; ++i) {
        if (type == DType::kF32) std::memcpy(row + 4 * i, &xr[i], 4);
        uint16_t h = type == DType::kF16 ? F32ToF16(xr[i]) : F32ToBF16(xr[i]);
        if (type == DType::kF16 || type == DType::kBF16) std::memcpy(row + 2 * i, &h, 2);
      }
      if (type == DType::kQ8_0) QuantizeRowQ8_0(xr, ne[0], row);
      if (type == DType::kQ4_0) QuantizeRowQ4_0(xr, ne[0], row);
    }
    ts.push_back({std::move(name), type, std::move(ne), std::move(bytes)});
  };
  // Odd byte sizes, so every tensor but the first needs padding before it.
  add("f32.odd", DType::kF32, {5, 3});
  add("f16.vec", DType::kF16, {7});
  add("bf16.mat", DType::kBF16, {3, 2, 1});
  add("q8_0.mat", DType::kQ8_0, {64, 3});
  add("q4_0.mat", DType::kQ4_0, {32, 3, 2, 1});
  add("f32.last", DType::kF32, {16});  // 64 bytes: the file ends exactly after its data
  return ts;
}

TEST(GgufTest, TensorsOfEveryDtypeRoundTripAligned) {
  for (uint32_t align : {32u, 64u, 8u}) {
    const std::string path = TempPath("tensors_" + std::to_string(align) + ".gguf");
    const auto ts = MakeTensors();
    GgufWriter w;
    w.Set("general.alignment", GgufValue::U32(align));
    for (const auto& t : ts) w.AddTensor(t.name, t.type, t.ne, t.bytes.data());
    w.Write(path);
    auto f = GgufFile::Open(path);
    EXPECT_EQ(f->alignment(), align);
    ASSERT_EQ(f->tensors().size(), ts.size());
    for (size_t i = 0; i < ts.size(); ++i) {
      SCOPED_TRACE(ts[i].name);
      const GgufTensorInfo& info = f->tensors()[i];
      EXPECT_EQ(info.name, ts[i].name);
      EXPECT_EQ(info.type, ts[i].type);
      EXPECT_EQ(info.ne, ts[i].ne);
      EXPECT_EQ(info.nbytes, ts[i].bytes.size());
      EXPECT_EQ(info.offset % align, 0u);
      EXPECT_EQ(f->FindTensor(ts[i].name), &info);
      const void* data = f->TensorData(info);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(data) % align, 0u);  // the mapping is page-aligned
      EXPECT_EQ(std::memcmp(data, ts[i].bytes.data(), ts[i].bytes.size()), 0);
    }
    EXPECT_EQ(f->FindTensor("nope"), nullptr);
    EXPECT_EQ(f->tensors()[4].n_elements(), 32 * 3 * 2);
  }
}

TEST(GgufTest, WriterRejectsBadInputAndLeavesNoTempFile) {
  const std::string path = TempPath("bad_write.gguf");
  std::remove(path.c_str());
  float data[64] = {};
  GgufWriter w;
  w.AddTensor("a", DType::kF32, {4}, data);
  ExpectError([&] { w.AddTensor("a", DType::kF32, {4}, data); }, {"duplicate", "'a'"});
  ExpectError([&] { w.AddTensor("q", DType::kQ8_0, {33}, data); }, {"'q'", "block size"});
  // A value that does not fit its declared width fails mid-write.
  w.Set("too.big", GgufValue{GgufType::kUint8, {}, uint64_t{300}});
  ExpectError([&] { w.Write(path); }, {path, "too.big"});
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  GgufWriter w2;
  w2.Set("general.alignment", GgufValue::U32(48));
  ExpectError([&] { w2.Write(path); }, {path, "alignment"});
  ExpectError([&] { GgufWriter().Write("/nonexistent-dir/x.gguf"); }, {"/nonexistent-dir/x.gguf"});
}

// ---------------------------------------------------------------------------------------------
// Files produced by llama.cpp.

std::string SharedDir() { return CQKV_SHARED_DIR; }

#define REQUIRE_SHARED(path)                          \
  if (!fs::exists(path))                              \
  GTEST_SKIP() << "shared data not found: " << (path) \
               << " (set CQKV_SHARED_DIR to the shared/ folder)"

TEST(GgufTest, ReadsLlamaCppStories260K) {
  const std::string path = SharedDir() + "/models/stories260K/stories260K.llamacpp.gguf";
  REQUIRE_SHARED(path);
  auto f = GgufFile::Open(path);
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->alignment(), 32u);
  EXPECT_EQ(f->GetString("general.architecture"), "llama");
  EXPECT_EQ(f->GetInt("llama.context_length"), 128);
  EXPECT_EQ(f->GetInt("llama.embedding_length"), 64);
  EXPECT_EQ(f->GetInt("llama.feed_forward_length"), 172);
  EXPECT_EQ(f->GetInt("llama.block_count"), 5);
  EXPECT_EQ(f->GetInt("llama.attention.head_count_kv"), 4);
  EXPECT_NEAR(f->GetFloat("llama.attention.layer_norm_rms_epsilon"), 1e-5, 1e-10);
  EXPECT_EQ(f->GetStringArray("tokenizer.ggml.tokens").size(), 512u);
  EXPECT_EQ(f->GetStringArray("tokenizer.ggml.tokens")[0], "<unk>");
  EXPECT_EQ(f->GetFloatArray("tokenizer.ggml.scores").size(), 512u);
  EXPECT_EQ(f->GetIntArray("tokenizer.ggml.token_type").size(), 512u);
  ASSERT_EQ(f->tensors().size(), 3u + 5u * 9u);
  const GgufTensorInfo* embd = f->FindTensor("token_embd.weight");
  ASSERT_NE(embd, nullptr);
  EXPECT_EQ(embd->ne, (std::vector<int64_t>{64, 512}));
  EXPECT_EQ(embd->type, DType::kF32);
  EXPECT_EQ(f->FindTensor("blk.4.attn_k.weight")->ne, (std::vector<int64_t>{64, 32}));
  EXPECT_EQ(f->FindTensor("blk.0.ffn_down.weight")->ne, (std::vector<int64_t>{172, 64}));
  EXPECT_EQ(f->FindTensor("output_norm.weight")->ne, (std::vector<int64_t>{64}));
  // Every tensor's data is readable and sane (all are F32 in this file).
  for (const auto& t : f->tensors()) {
    ASSERT_EQ(t.type, DType::kF32) << t.name;
    const auto* x = static_cast<const float*>(f->TensorData(t));
    for (int64_t i = 0; i < t.n_elements(); ++i) ASSERT_TRUE(std::isfinite(x[i])) << t.name;
  }
  EXPECT_EQ(f->FindTensor("output_norm.weight")->nbytes, 256u);
}

TEST(GgufTest, ReadsLlamaCppVocabFiles) {
  const std::string dir = SharedDir() + "/tests/tokenizer-vectors";
  REQUIRE_SHARED(dir);
  auto spm = GgufFile::Open(dir + "/ggml-vocab-llama-spm.gguf");
  EXPECT_EQ(spm->version(), 3u);
  EXPECT_TRUE(spm->tensors().empty());
  EXPECT_EQ(spm->GetString("tokenizer.ggml.model"), "llama");
  EXPECT_EQ(spm->GetStringArray("tokenizer.ggml.tokens").size(), 32000u);
  EXPECT_TRUE(spm->GetBool("tokenizer.ggml.add_bos_token"));
  EXPECT_FALSE(spm->GetBool("tokenizer.ggml.add_eos_token"));
  auto gpt2 = GgufFile::Open(dir + "/ggml-vocab-gpt-2.gguf");
  EXPECT_EQ(gpt2->GetString("general.architecture"), "gpt2");
  EXPECT_EQ(gpt2->GetStringArray("tokenizer.ggml.tokens").size(), 50257u);
  EXPECT_EQ(gpt2->GetStringArray("tokenizer.ggml.merges").size(), 50000u);
  EXPECT_EQ(gpt2->GetInt("tokenizer.ggml.eos_token_id"), 50256);
}

// ---------------------------------------------------------------------------------------------
// Malformed files: each must fail with one cqkv::Error naming the file.

TEST(GgufErrorTest, EmptyAndForeignFiles) {
  const std::string empty = TempPath("empty.gguf");
  WriteBytes(empty, "");
  ExpectOpenError(empty, {"not a GGUF file"});
  const std::string text = TempPath("text.gguf");
  WriteBytes(text, "this is a text file, not a model\n");
  ExpectOpenError(text, {"not a GGUF file"});
  ExpectOpenError(TempPath("does_not_exist.gguf"), {"cannot open"});
}

TEST(GgufErrorTest, EveryTruncationFails) {
  const std::string full = TempPath("trunc_full.gguf");
  const auto ts = MakeTensors();
  GgufWriter w = AllTypesWriter();
  for (const auto& t : ts) w.AddTensor(t.name, t.type, t.ne, t.bytes.data());
  w.Write(full);
  const std::string bytes = ReadFile(full);
  const std::string path = TempPath("trunc.gguf");
  // Proper prefixes ending inside the header, the metadata, the tensor infos, the padding and
  // the tensor data (the last tensor ends exactly at the end of the file): every length through
  // the first metadata values, then an odd stride so cuts land at every offset within fields.
  for (size_t n = 0; n < bytes.size(); n += (n < 160 ? 1 : 5)) {
    SCOPED_TRACE(n);
    WriteBytes(path, bytes.substr(0, n));
    ExpectOpenError(path, {n < 4 ? "not a GGUF file" : "truncated"});
  }
  WriteBytes(path, bytes.substr(0, bytes.size() - 1));
  ExpectOpenError(path, {"f32.last", "beyond the end"});
}

TEST(GgufErrorTest, VersionsAndCounts) {
  const std::string path = TempPath("hdr.gguf");
  WriteBytes(path, Bytes().Header(1, 0, 0).str());
  ExpectOpenError(path, {"version 1", "not supported"});
  WriteBytes(path, Bytes().Header(4, 0, 0).str());
  ExpectOpenError(path, {"unsupported GGUF version 4"});
  WriteBytes(path, Bytes().Header(0x03000000, 0, 0).str());
  ExpectOpenError(path, {"big-endian"});
  WriteBytes(path, Bytes().Header(3, 0, uint64_t{1} << 60).Zeros(64).str());
  ExpectOpenError(path, {"metadata key-value count"});
  WriteBytes(path, Bytes().Header(3, uint64_t{1} << 60, 0).Zeros(64).str());
  ExpectOpenError(path, {"tensor count"});
  WriteBytes(path, Bytes()
                       .Header(2, 0, 1)
                       .Str("k")
                       .Put<uint32_t>(9)
                       .Put<uint32_t>(4)
                       .Put<uint64_t>(uint64_t{1} << 62)
                       .str());
  ExpectOpenError(path, {"array length"});
  WriteBytes(path, Bytes().Header(3, 0, 1).Put<uint64_t>(uint64_t{1} << 62).str());
  ExpectOpenError(path, {"metadata key"});
  // Version 2 has the same layout as 3.
  WriteBytes(path, Bytes().Header(2, 0, 1).KvU32("a", 5).str());
  EXPECT_EQ(GgufFile::Open(path)->GetInt("a"), 5);
}

TEST(GgufErrorTest, BadMetadata) {
  const std::string path = TempPath("meta_bad.gguf");
  WriteBytes(path, Bytes().Header(3, 0, 1).Str("weird.key").Put<uint32_t>(13).Zeros(8).str());
  ExpectOpenError(path, {"weird.key", "unknown value type 13"});
  WriteBytes(path, Bytes()
                       .Header(3, 0, 1)
                       .Str("arr.key")
                       .Put<uint32_t>(9)
                       .Put<uint32_t>(77)
                       .Put<uint64_t>(1)
                       .Zeros(8)
                       .str());
  ExpectOpenError(path, {"arr.key", "unknown array element type 77"});
  WriteBytes(path, Bytes().Header(3, 0, 2).KvU32("dup", 1).KvU32("dup", 2).str());
  ExpectOpenError(path, {"duplicate metadata key 'dup'"});
  Bytes deep;
  deep.Header(3, 0, 1).Str("deep");
  deep.Put<uint32_t>(9);
  for (int i = 0; i < 40; ++i) deep.Put<uint32_t>(9).Put<uint64_t>(1);
  deep.Put<uint32_t>(4).Put<uint64_t>(0);
  WriteBytes(path, deep.str());
  ExpectOpenError(path, {"deep", "nested"});
  for (uint32_t align : {0u, 48u, 3u}) {
    WriteBytes(path, Bytes().Header(3, 0, 1).KvU32("general.alignment", align).str());
    ExpectOpenError(path, {"general.alignment", std::to_string(align)});
  }
  WriteBytes(path,
             Bytes().Header(3, 0, 1).Str("general.alignment").Put<uint32_t>(8).Str("32").str());
  ExpectOpenError(path, {"general.alignment", "string"});
}

TEST(GgufErrorTest, BadTensorInfos) {
  const std::string path = TempPath("tinfo_bad.gguf");
  auto file = [](const std::string& name, uint32_t type, uint64_t n, uint64_t offset,
                 size_t data_bytes) {
    return Bytes().Header(3, 1, 0).Tensor(name, n, type, offset).Pad(32).Zeros(data_bytes).str();
  };
  WriteBytes(path, file("blk.3.ffn_up.weight", 12, 256, 0, 1024));
  ExpectOpenError(path, {"blk.3.ffn_up.weight", "Q4_K", "12", "not support"});
  WriteBytes(path, file("odd.weight", 999, 256, 0, 1024));
  ExpectOpenError(path, {"odd.weight", "999"});
  WriteBytes(path, file("mis.weight", 0, 4, 16, 64));
  ExpectOpenError(path, {"mis.weight", "offset 16", "alignment 32"});
  WriteBytes(path, file("far.weight", 0, 4, 1 << 20, 64));
  ExpectOpenError(path, {"far.weight", "offset 1048576 differs from 0"});
  WriteBytes(path, file("huge.weight", 0, uint64_t{1} << 39, 0, 64));
  ExpectOpenError(path, {"huge.weight", "beyond the end"});
  WriteBytes(path, file("q8.weight", 8, 33, 0, 64));
  ExpectOpenError(path, {"q8.weight", "block size"});
  WriteBytes(path, Bytes()
                       .Header(3, 2, 0)
                       .Tensor("twice", 4, 0, 0)
                       .Tensor("twice", 4, 0, 32)
                       .Pad(32)
                       .Zeros(64)
                       .str());
  ExpectOpenError(path, {"duplicate tensor name 'twice'"});
  WriteBytes(path, Bytes().Header(3, 1, 0).Str("t5").Put<uint32_t>(5).Zeros(64).str());
  ExpectOpenError(path, {"'t5'", "5 dimensions"});
  // A sound one-tensor file, as a control.
  WriteBytes(path, file("ok.weight", 0, 4, 0, 16));
  EXPECT_EQ(GgufFile::Open(path)->tensors().at(0).nbytes, 16u);
}

}  // namespace
}  // namespace cqkv
