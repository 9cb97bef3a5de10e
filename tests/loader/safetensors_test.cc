// The safetensors reader on hand-made files: a valid one is read as written, and every structural
// corruption is refused with the file (and tensor, where one is at fault) named.
#include "loader/safetensors.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>

#include "hf_testing.h"
#include "test_util.h"

namespace cqkv {
namespace {

using testing::ExpectErrorMentioning;
using testing::F32Bytes;
using testing::RawSafetensors;
using testing::SafetensorsBytes;
using testing::StTensor;
using testing::WriteBytes;

std::string TempFile(const std::string& name) { return ::testing::TempDir() + "/" + name; }

std::shared_ptr<const SafetensorsFile> OpenBytes(const std::string& name,
                                                 const std::string& bytes) {
  const std::string path = TempFile(name);
  WriteBytes(path, bytes);
  return SafetensorsFile::Open(path);
}

void ExpectRefused(const std::string& name, const std::string& bytes,
                   std::vector<std::string> parts) {
  parts.push_back(name);  // the file is always named
  ExpectErrorMentioning([&] { OpenBytes(name, bytes); }, parts);
}

TEST(Safetensors, ReadsTensorsMetadataAndData) {
  const std::vector<float> a = {1.0f, -2.0f, 3.5f, 0.25f, 8.0f, -0.0f};
  const std::string b16 = {'\x01', '\x02', '\x03', '\x04'};
  auto f = OpenBytes("ok.safetensors", SafetensorsBytes({{"a", "F32", {2, 3}, F32Bytes(a)},
                                                         {"b", "BF16", {2}, b16},
                                                         {"empty", "F16", {0, 4}, ""},
                                                         {"scalar", "I8", {}, "\x07"}},
                                                        {{"format", "pt"}}));
  ASSERT_EQ(f->tensors().size(), 4u);
  const SafetensorsTensor* t = f->Find("a");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->dtype, "F32");
  EXPECT_EQ(t->shape, (std::vector<int64_t>{2, 3}));
  ASSERT_EQ(t->nbytes, 24);
  EXPECT_EQ(std::memcmp(t->data, a.data(), 24), 0);
  EXPECT_EQ(f->Find("b")->data, t->data + 24);  // back to back
  EXPECT_EQ(f->Find("empty")->nbytes, 0);
  EXPECT_EQ(f->Find("scalar")->data[0], 7);
  EXPECT_EQ(f->Find("missing"), nullptr);
  EXPECT_EQ(f->metadata().at("format"), "pt");
}

TEST(Safetensors, HeaderOnlyFileHasNoTensors) {
  EXPECT_TRUE(OpenBytes("none.safetensors", RawSafetensors("{}      ", ""))->tensors().empty());
}

TEST(Safetensors, RefusesBadHeaderLength) {
  ExpectRefused("short.safetensors", "abc", {"too short"});
  std::string big = RawSafetensors("{}", "");
  big[5] = 1;  // 2^40 + 2 bytes
  ExpectRefused("big.safetensors", big, {"header length"});
  std::string over = RawSafetensors("{}", "");
  over[0] = 3;  // one byte more than the file holds
  ExpectRefused("over.safetensors", over, {"header length 3"});
}

TEST(Safetensors, RefusesMalformedHeaders) {
  ExpectRefused("notjson.safetensors", RawSafetensors("{\"a\": ", ""), {"not valid JSON"});
  ExpectRefused("array.safetensors", RawSafetensors("[1, 2]", ""), {"JSON object"});
  ExpectRefused("fields.safetensors", RawSafetensors(R"({"a": {"dtype": "F32"}})", ""),
                {"'a'", "data_offsets"});
  ExpectRefused(
      "extra.safetensors",
      RawSafetensors(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "x": 1}})",
                     "abcd"),
      {"'a'", "unexpected fields"});
  ExpectRefused("meta.safetensors", RawSafetensors(R"({"__metadata__": {"n": 1}})", ""),
                {"__metadata__", "'n'"});
  ExpectRefused(
      "negshape.safetensors",
      RawSafetensors(R"({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", "abcd"),
      {"'a'", "non-negative"});
  ExpectRefused("overflow.safetensors",
                RawSafetensors(R"({"a": {"dtype": "U8", "shape": [4294967296, 4294967296, 8],
                                  "data_offsets": [0, 4]}})",
                               "abcd"),
                {"'a'", "overflows"});
}

TEST(Safetensors, RefusesUnknownDtypeAndShapeMismatch) {
  ExpectRefused("dtype.safetensors", SafetensorsBytes({{"w", "Q4", {2}, "ab"}}),
                {"'w'", "unknown dtype 'Q4'"});
  ExpectRefused("shape.safetensors", SafetensorsBytes({{"w", "F32", {2, 3}, std::string(20, 'x')}}),
                {"'w'", "[2,3]", "needs 24 bytes", "has 20"});
}

TEST(Safetensors, RefusesRangesOutsideOverlappingOrLeavingGaps) {
  // Tensor a at [0, 4), tensor b at [b0, b1), `data` bytes of tensor data.
  auto with = [](int b0, int b1, int data) {
    const std::string h = fmt::format(
        R"({{"a": {{"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}},
            "b": {{"dtype": "U8", "shape": [{}], "data_offsets": [{}, {}]}}}})",
        std::max(b1 - b0, 0), b0, b1);
    return RawSafetensors(h, std::string(data, 'x'));
  };
  EXPECT_EQ(OpenBytes("tiled.safetensors", with(4, 8, 8))->tensors().size(), 2u);
  ExpectRefused("outside.safetensors", with(4, 8, 7), {"'b'", "truncated"});
  ExpectRefused("overlap.safetensors", with(2, 6, 6), {"'b'", "overlaps"});
  ExpectRefused("gap.safetensors", with(5, 9, 9), {"bytes [4, 5)", "'b'", "no tensor"});
  ExpectRefused("tail.safetensors", with(4, 8, 10), {"last 2 bytes"});
  ExpectRefused("reversed.safetensors", with(8, 4, 8), {"'b'", "[8, 4)"});
}

}  // namespace
}  // namespace cqkv
