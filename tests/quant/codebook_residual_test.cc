// .cqcb files with residual (two-stage) values: the stages are stored beside the expanded V
// tables and must expand to them bit for bit; damaged or inconsistent files are one clear error.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "quant/codebook.h"
#include "quant/codebook_testing.h"
#include "quant/residual.h"
#include "test_util.h"
#include "util/error.h"
#include "util/input_file.h"

namespace cqkv {
namespace {

using testing::Replace;
using testing::TempPath;
using testing::WithChecksum;
using testing::WithHeader;

// A set with residual values: random stages, V tables their expansions.
CodebookSet ResidualSet(CqConfig cfg, int n_layers, int n_kv_heads, int head_dim, uint64_t seed) {
  return testing::RandomValueBasisSet(cfg, n_layers, n_kv_heads, head_dim, seed,
                                      ValueKind::kResidual, ExpandResidual);
}

void Write(const std::string& path, const std::string& b) {
  std::ofstream(path, std::ios::binary).write(b.data(), static_cast<std::streamsize>(b.size()));
}

TEST(CodebookResidual, RoundTripIsExact) {
  for (CqConfig cfg : {CqConfig{4, 8}, CqConfig{2, 4}}) {
    const CodebookSet s = ResidualSet(cfg, 2, 2, 8, 5);
    const std::string path = TempPath("res.cqcb");
    SaveCodebooks(s, path);
    const CodebookSet r = LoadCodebooks(path);
    EXPECT_EQ(r.values, ValueKind::kResidual);
    EXPECT_EQ(r.value_basis_rows(), 2 << (cfg.bits / 2));
    EXPECT_EQ(r.value_basis, s.value_basis);
    EXPECT_EQ(r.centroids, s.centroids);
    // Group 3 of layer 1 starts 3 * rows * c floats into the layer's stages.
    EXPECT_EQ(r.ValueBasis(1, 3)[5], s.value_basis[1][3 * r.value_basis_rows() * cfg.channels + 5]);
    const std::string bytes = ReadFile(path);
    EXPECT_NE(bytes.find("\"values\": \"residual\""), std::string::npos);
    EXPECT_NE(bytes.find("stage A rows, then stage B"), std::string::npos);
    std::filesystem::remove(path);
  }
}

// V tables that are not the expansion of their stages would make a per-stage kernel and the
// exact path disagree: refused at load, naming the layer and group.
TEST(CodebookResidual, TablesMustMatchTheirStages) {
  const CodebookSet s = ResidualSet(CqConfig{2, 4}, 1, 1, 4, 6);
  const std::string path = TempPath("res.cqcb");
  SaveCodebooks(s, path);
  // The last float before the checksum: layer 0, group 1, last row of stage B, channel 1.
  const std::string b = testing::WithLastFloatRaised(ReadFile(path));
  Write(path, b);
  testing::ExpectErrorMentioning([&] { LoadCodebooks(path); }, {path, "checksum"});
  Write(path, WithChecksum(b));
  testing::ExpectErrorMentioning([&] { LoadCodebooks(path); },
                                 {path, "layer 0 group 1", "not the expansion", "residual"});
  std::filesystem::remove(path);
}

TEST(CodebookResidual, DamagedFilesAreClearErrors) {
  const std::string path = TempPath("res.cqcb");
  SaveCodebooks(ResidualSet(CqConfig{4, 8}, 2, 1, 8, 7), path);
  const std::string bytes = ReadFile(path);
  // Cut inside the stages (the last 8 floats and the checksum gone): truncated.
  Write(path, bytes.substr(0, bytes.size() - 40));
  testing::ExpectErrorMentioning([&] { LoadCodebooks(path); }, {path, "truncated"});
  // The same bytes claimed as k-means values: the stages are trailing data.
  Write(path, WithHeader(bytes, [](std::string h) {
          return Replace(h, "\"values\": \"residual\"", "\"values\": \"kmeans\"");
        }));
  testing::ExpectErrorMentioning([&] { LoadCodebooks(path); }, {path, "trailing data"});
  // Claimed as additive values (b + 1 = 9 rows per group instead of 32): sizes disagree.
  Write(path, WithHeader(bytes, [](std::string h) {
          return Replace(h, "\"values\": \"residual\"", "\"values\": \"additive\"");
        }));
  testing::ExpectErrorMentioning([&] { LoadCodebooks(path); }, {path, "trailing data"});
  // An unknown kind names the field.
  Write(path, WithHeader(bytes, [](std::string h) {
          return Replace(h, "\"values\": \"residual\"", "\"values\": \"rvq\"");
        }));
  testing::ExpectErrorMentioning([&] { LoadCodebooks(path); }, {path, "field \"values\"", "rvq"});
  std::filesystem::remove(path);
}

// Residual codes split b into two equal halves: an odd b is refused when saving and loading.
TEST(CodebookResidual, OddCodeSizesAreRefused) {
  CodebookSet s = ResidualSet(CqConfig{4, 8}, 1, 1, 8, 8);
  const std::string path = TempPath("res.cqcb");
  SaveCodebooks(s, path);
  const std::string bytes = ReadFile(path);
  Write(path, WithHeader(bytes, [](std::string h) {
          return Replace(Replace(h, "\"b\": 8", "\"b\": 7"), "\"4c8b\"", "\"4c7b\"");
        }));
  testing::ExpectErrorMentioning([&] { LoadCodebooks(path); }, {path, "even b"});
  s.config.bits = 7;
  testing::ExpectErrorMentioning([&] { SaveCodebooks(s, path); }, {path, "even b"});
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace cqkv
