#include "quant/rope_comm.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "quant/codebook.h"
#include "test_util.h"
#include "util/error.h"

namespace cqkv {
namespace {

CodebookSet SmallSet(CqConfig cfg, KeyPosition keys, KeyKind kind) {
  CodebookSet s;
  s.config = cfg;
  s.keys = keys;
  s.key_kind = kind;
  s.n_layers = 2;
  s.n_kv_heads = 2;
  s.head_dim = 16;
  s.model_fingerprint = 0xabc;
  std::mt19937 rng(5);
  std::normal_distribution<float> nd;
  for (int t = 0; t < 2 * s.n_layers; ++t) {
    s.centroids.emplace_back(static_cast<size_t>(s.n_groups()) * cfg.n_centroids() * cfg.channels);
    for (float& v : s.centroids.back()) v = nd(rng);
    s.objective.push_back(0.5);
  }
  return s;
}

uint32_t FileVersion(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  return static_cast<uint8_t>(bytes.at(4)) | static_cast<uint32_t>(bytes.at(5)) << 8;
}

// The key kind survives a save and load (version 3); k-means keys still write version 2, so
// older builds keep reading every file without rope-comm keys.
TEST(RopeCommCodebook, KindRoundTripsAndOnlyItBumpsTheVersion) {
  const std::string path = ::testing::TempDir() + "/rope_comm_test.cqcb";
  const CodebookSet rc = SmallSet(CqConfig{4, 4}, KeyPosition::kPreRope, KeyKind::kRopeComm);
  SaveCodebooks(rc, path);
  EXPECT_EQ(FileVersion(path), 3u);
  const CodebookSet back = LoadCodebooks(path);
  EXPECT_EQ(back.key_kind, KeyKind::kRopeComm);
  EXPECT_EQ(back.keys, KeyPosition::kPreRope);
  EXPECT_EQ(back.centroids, rc.centroids);
  SaveCodebooks(SmallSet(CqConfig{4, 4}, KeyPosition::kPreRope, KeyKind::kKMeans), path);
  EXPECT_EQ(FileVersion(path), 2u);
  EXPECT_EQ(LoadCodebooks(path).key_kind, KeyKind::kKMeans);
  std::remove(path.c_str());
}

TEST(RopeCommCodebook, NeedsPreRopeKeysAndWholePairs) {
  const std::string path = ::testing::TempDir() + "/rope_comm_bad.cqcb";
  testing::ExpectErrorMentioning(
      [&] {
        SaveCodebooks(SmallSet(CqConfig{4, 4}, KeyPosition::kPostRope, KeyKind::kRopeComm), path);
      },
      {path, "rope-comm", "post-rope"});
  testing::ExpectErrorMentioning(
      [&] {
        SaveCodebooks(SmallSet(CqConfig{1, 4}, KeyPosition::kPreRope, KeyKind::kRopeComm), path);
      },
      {path, "even group size"});
  EXPECT_EQ(ParseKeyKind("rope-comm"), KeyKind::kRopeComm);
  EXPECT_STREQ(KeyKindName(KeyKind::kRopeComm), "rope-comm");
  testing::ExpectErrorMentioning([] { ParseKeyKind("rope"); }, {"'rope'"});
}

TEST(RopeCommCodebook, UnsupportedShapesSayWhy) {
  const bool norm = false, neox = true;
  EXPECT_EQ(RopeCommUnsupported(CqConfig{8, 8}, 128, norm), "");
  EXPECT_NE(RopeCommUnsupported(CqConfig{3, 8}, 96, norm).find("odd group size"),
            std::string::npos);
  EXPECT_NE(RopeCommUnsupported(CqConfig{8, 8}, 36, norm).find("does not divide"),
            std::string::npos);
  EXPECT_NE(RopeCommUnsupported(CqConfig{8, 8}, 128, neox).find("NEOX"), std::string::npos);
}

// Every centroid of whole pairs commutes with RoPE, so the constrained optimum is weighted
// k-means itself: the fit returns exactly what KMeans does with the same parameters, and refuses
// groups that split a pair.
TEST(RopeCommFit, IsWeightedKMeansOnWholePairs) {
  std::mt19937 rng(9);
  std::normal_distribution<float> nd;
  std::vector<float> x(400 * 4), w(400);
  for (float& v : x) v = nd(rng);
  for (float& v : w) v = std::abs(nd(rng));
  KMeansParams kp;
  kp.k = 16;
  kp.seed = 3;
  const KMeansResult a = FitRopeCommGroup(ConstMat(x.data(), 400, 4), w, kp);
  const KMeansResult b = KMeans(ConstMat(x.data(), 400, 4), w, kp);
  EXPECT_EQ(a.centroids, b.centroids);
  EXPECT_EQ(a.objective, b.objective);
  testing::ExpectErrorMentioning([&] { FitRopeCommGroup(ConstMat(x.data(), 400, 3), {}, kp); },
                                 {"whole RoPE pairs"});
}

}  // namespace
}  // namespace cqkv
