#include "quant/codebook.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>

#include "quant/additive.h"
#include "quant/codebook_testing.h"
#include "test_util.h"
#include "util/error.h"
#include "util/mapped_file.h"

namespace cqkv {
namespace {

using testing::RandomSet;
using testing::Replace;
using testing::TempPath;
using testing::WithChecksum;
using testing::WithHeader;

TEST(CqConfig, ParseAndName) {
  const CqConfig c = CqConfig::Parse("8c4b");
  EXPECT_EQ(c.channels, 8);
  EXPECT_EQ(c.bits, 4);
  EXPECT_EQ(c.n_centroids(), 16);
  EXPECT_EQ(c.Name(), "8c4b");
  EXPECT_EQ(CqConfig::Parse("1c16b").n_centroids(), 65536);
  for (const char* bad : {"", "4c", "c8b", "4c8", "4x8b", "4c8bb", "0c8b", "4c17b", "65c8b"}) {
    testing::ExpectErrorMentioning([&] { CqConfig::Parse(bad); }, {std::string("'") + bad + "'"});
  }
  EXPECT_EQ(ParseKeyPosition("pre-rope"), KeyPosition::kPreRope);
  EXPECT_STREQ(KeyPositionName(KeyPosition::kPostRope), "post-rope");
  EXPECT_THROW(ParseKeyPosition("prerope"), Error);
}

TEST(Codebook, SaveLoadRoundTripIsExact) {
  const CodebookSet s = RandomSet(CqConfig{3, 5}, 2, 2, 12, 1);
  const std::string path = TempPath("rt.cqcb");
  SaveCodebooks(s, path);
  const CodebookSet r = LoadCodebooks(path);
  EXPECT_EQ(r.config.channels, 3);
  EXPECT_EQ(r.config.bits, 5);
  EXPECT_EQ(r.keys, s.keys);
  EXPECT_EQ(r.fisher, s.fisher);
  EXPECT_EQ(r.n_layers, s.n_layers);
  EXPECT_EQ(r.n_kv_heads, s.n_kv_heads);
  EXPECT_EQ(r.head_dim, s.head_dim);
  EXPECT_EQ(r.model_fingerprint, s.model_fingerprint);
  EXPECT_EQ(r.model_name, s.model_name);
  EXPECT_EQ(r.calibration, s.calibration);
  EXPECT_EQ(r.objective, s.objective);  // bitwise: JSON keeps round-trip digits
  EXPECT_EQ(r.centroids, s.centroids);
  EXPECT_EQ(r.Table(1, 1, 3)[2], s.centroids[3][3 * 32 * 3 + 2]);
  std::filesystem::remove(path);
}

TEST(Codebook, DamagedFilesAreClearErrors) {
  const std::string path = TempPath("good.cqcb");
  SaveCodebooks(RandomSet(CqConfig{4, 4}, 2, 2, 16, 2), path);
  const std::string bytes = ReadFile(path);
  const std::string bad = TempPath("bad.cqcb");
  auto write = [&](const std::string& b) {
    std::ofstream(bad, std::ios::binary).write(b.data(), static_cast<std::streamsize>(b.size()));
  };
  for (size_t len : {size_t{0}, size_t{3}, size_t{10}, size_t{40}, bytes.size() / 2,
                     bytes.size() - 9, bytes.size() - 1}) {
    write(bytes.substr(0, len));
    testing::ExpectErrorMentioning([&] { LoadCodebooks(bad); }, {bad});
  }
  write(bytes.substr(0, bytes.size() - 100));
  testing::ExpectErrorMentioning([&] { LoadCodebooks(bad); }, {bad, "truncated"});
  // One flipped bit in the centroid data, and one in the JSON header.
  std::string flipped = bytes;
  flipped[bytes.size() - 200] ^= 0x10;
  write(flipped);
  testing::ExpectErrorMentioning([&] { LoadCodebooks(bad); }, {bad, "checksum"});
  flipped = bytes;
  flipped[30] ^= 0x01;
  write(flipped);
  testing::ExpectErrorMentioning([&] { LoadCodebooks(bad); }, {bad});
  write(bytes + "x");
  testing::ExpectErrorMentioning([&] { LoadCodebooks(bad); }, {bad, "inconsistent"});
  std::string v4 = bytes;
  v4[4] = 4;
  write(v4);
  testing::ExpectErrorMentioning([&] { LoadCodebooks(bad); }, {bad, "unsupported version 4"});
  write("# a text file, not a codebook\n");
  testing::ExpectErrorMentioning([&] { LoadCodebooks(bad); }, {bad, "not a cqkv codebook file"});
  testing::ExpectErrorMentioning([&] { LoadCodebooks(bad + ".missing"); }, {bad + ".missing"});
  std::filesystem::remove(path);
  std::filesystem::remove(bad);
}

// Headers a plain get<int>() accepted: out-of-range integers wrapped (4294967300 -> 4), floats
// and bools converted, duplicate keys resolved to the last, "config" never compared with c/b.
TEST(Codebook, HeaderSchemaIsStrict) {
  const std::string path = TempPath("good.cqcb");
  SaveCodebooks(RandomSet(CqConfig{4, 4}, 2, 2, 16, 2), path);
  const std::string bytes = ReadFile(path);
  const std::string bad = TempPath("bad.cqcb");
  auto expect = [&](const std::function<std::string(std::string)>& edit,
                    const std::vector<std::string>& parts) {
    const std::string b = WithHeader(bytes, edit);
    std::ofstream(bad, std::ios::binary).write(b.data(), static_cast<std::streamsize>(b.size()));
    std::vector<std::string> all = {bad, "bad header"};
    all.insert(all.end(), parts.begin(), parts.end());
    testing::ExpectErrorMentioning([&] { LoadCodebooks(bad); }, all);
  };
  // The unedited header loads (the helper itself is sound).
  {
    const std::string b = WithHeader(bytes, [](std::string h) { return h; });
    EXPECT_EQ(b, bytes);
  }
  expect([](std::string h) { return Replace(h, "\"c\": 4", "\"c\": 4294967300"); },
         {"field \"c\" is 4294967300", "[1, 64]"});
  expect([](std::string h) { return Replace(h, "\"b\": 4", "\"b\": 1.5"); },
         {"field \"b\" is 1.5", "integer"});
  expect([](std::string h) { return Replace(h, "\"n_layers\": 2", "\"n_layers\": true"); },
         {"field \"n_layers\" is true"});
  expect([](std::string h) { return Replace(h, "\"head_dim\": 16", "\"head_dim\": -16"); },
         {"field \"head_dim\" is -16"});
  expect([](std::string h) { return Replace(h, "{", "{\"c\": 8, "); },
         {"field \"c\" appears twice"});
  expect([](std::string h) { return Replace(h, "\"config\": \"4c4b\"", "\"config\": \"4c8b\""); },
         {"field \"config\" is \"4c8b\"", "say 4c4b"});
  expect([](std::string h) { return Replace(h, "{", "{\"extra\": 1, "); },
         {"unknown field \"extra\""});
  expect([](std::string h) { return Replace(h, "\"fisher\": true", "\"fisher\": 1"); },
         {"field \"fisher\" is 1"});
  expect([](std::string h) { return Replace(h, "\"keys\": \"pre-rope\"", "\"keys\": \"a\\nb\""); },
         {"field \"keys\" is \"a\\nb\""});
  expect([](std::string h) { return Replace(h, "\"model_name\"", "\"model_nam\""); },
         {"unknown field \"model_nam\""});
  expect([](std::string h) { return h.substr(0, h.size() / 2); }, {"not valid JSON"});
  std::filesystem::remove(path);
  std::filesystem::remove(bad);
}

TEST(Codebook, DevicesAndDirectoriesAreRefused) {
  testing::ExpectErrorMentioning([] { LoadCodebooks("/dev/zero"); },
                                 {"codebook file", "/dev/zero", "not a regular file"});
  testing::ExpectErrorMentioning([] { LoadCodebooks(::testing::TempDir()); }, {"is a directory"});
}

TEST(Codebook, SaveRejectsInconsistentSets) {
  CodebookSet s = RandomSet(CqConfig{4, 4}, 2, 2, 16, 3);
  s.centroids[1].pop_back();
  EXPECT_THROW(SaveCodebooks(s, TempPath("x.cqcb")), Error);
  s = RandomSet(CqConfig{4, 4}, 2, 2, 16, 3);
  s.head_dim = 18;  // c = 4 does not divide it
  EXPECT_THROW(SaveCodebooks(s, TempPath("x.cqcb")), Error);
}

// A set with additive values: random bases, V tables their expansions.
CodebookSet AdditiveSet(CqConfig cfg, int n_layers, int n_kv_heads, int head_dim, uint64_t seed) {
  return testing::RandomValueBasisSet(cfg, n_layers, n_kv_heads, head_dim, seed,
                                      ValueKind::kAdditive, ExpandAdditive);
}

TEST(Codebook, AdditiveValuesRoundTrip) {
  const CodebookSet s = AdditiveSet(CqConfig{4, 3}, 2, 2, 8, 5);
  const std::string path = TempPath("add.cqcb");
  SaveCodebooks(s, path);
  const CodebookSet r = LoadCodebooks(path);
  EXPECT_EQ(r.values, ValueKind::kAdditive);
  EXPECT_EQ(r.value_basis, s.value_basis);
  EXPECT_EQ(r.centroids, s.centroids);
  EXPECT_EQ(r.ValueBasis(1, 3)[4], s.value_basis[1][3 * 4 * 4 + 4]);
  EXPECT_NE(ReadFile(path).find("\"values\": \"additive\""), std::string::npos);
  // A k-means set records its kind too.
  SaveCodebooks(RandomSet(CqConfig{4, 3}, 2, 2, 8, 5), path);
  EXPECT_EQ(LoadCodebooks(path).values, ValueKind::kKMeans);
  EXPECT_NE(ReadFile(path).find("\"values\": \"kmeans\""), std::string::npos);
  std::filesystem::remove(path);
}

// Values whose centroid tables are not the expansion of their bases would make the masked-add
// kernel and every other path disagree: refused at load.
TEST(Codebook, AdditiveTablesMustMatchTheirBases) {
  const CodebookSet s = AdditiveSet(CqConfig{2, 2}, 1, 1, 4, 6);
  const std::string path = TempPath("add.cqcb");
  SaveCodebooks(s, path);
  // The last float before the checksum is the last basis value (layer 0, group 1, last basis
  // vector, channel 1).
  std::string b = testing::WithLastFloatRaised(ReadFile(path));
  std::ofstream(path, std::ios::binary).write(b.data(), static_cast<std::streamsize>(b.size()));
  testing::ExpectErrorMentioning([&] { LoadCodebooks(path); }, {path, "checksum"});
  b = WithChecksum(b);
  std::ofstream(path, std::ios::binary).write(b.data(), static_cast<std::streamsize>(b.size()));
  testing::ExpectErrorMentioning([&] { LoadCodebooks(path); },
                                 {path, "layer 0 group 1", "not the expansion"});
  std::filesystem::remove(path);
}

// A version 1 file (written before value kinds: no "values" field) still loads, as k-means
// values; a version 2 file must name its kind.
TEST(Codebook, Version1FilesLoadAsKMeansValues) {
  const CodebookSet s = RandomSet(CqConfig{4, 4}, 2, 2, 16, 7);
  const std::string path = TempPath("v1.cqcb");
  SaveCodebooks(s, path);
  const std::string v2 = ReadFile(path);
  std::string v1 = WithHeader(v2, [](std::string h) {
    // Keys are written sorted, so "values" is the last one.
    return Replace(h, ",\n \"values\": \"kmeans\"", "");
  });
  v1[4] = 1;
  v1 = WithChecksum(v1);
  std::ofstream(path, std::ios::binary).write(v1.data(), static_cast<std::streamsize>(v1.size()));
  const CodebookSet r = LoadCodebooks(path);
  EXPECT_EQ(r.values, ValueKind::kKMeans);
  EXPECT_TRUE(r.value_basis.empty());
  EXPECT_EQ(r.centroids, s.centroids);
  EXPECT_EQ(r.objective, s.objective);
  // Version 2 without the field, and version 1 with it, are refused naming it.
  std::string missing = v1;
  missing[4] = 2;
  missing = WithChecksum(missing);
  std::ofstream(path, std::ios::binary)
      .write(missing.data(), static_cast<std::streamsize>(missing.size()));
  testing::ExpectErrorMentioning([&] { LoadCodebooks(path); }, {path, "missing field \"values\""});
  std::string extra = v2;
  extra[4] = 1;
  extra = WithChecksum(extra);
  std::ofstream(path, std::ios::binary)
      .write(extra.data(), static_cast<std::streamsize>(extra.size()));
  testing::ExpectErrorMentioning([&] { LoadCodebooks(path); }, {path, "unknown field \"values\""});
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace cqkv
