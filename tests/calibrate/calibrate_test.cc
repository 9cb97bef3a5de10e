#include "calibrate/calibrate.h"

#include <gtest/gtest.h>

#include <cmath>

#include "eval/perplexity.h"
#include "model/fingerprint.h"
#include "random_model.h"
#include "util/error.h"

namespace cqkv {
namespace {

std::vector<int32_t> Tokens(int n, int vocab) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) t[i] = (i * 7 + i / 5) % vocab;
  return t;
}

TEST(Calibrate, ProducesCompatibleCodebooksForBothKeyPositionsAndWeightings) {
  auto m = testing::MakeRandomModel(testing::SmallConfig(), 31, 0.3f);
  ThreadPool pool(2);
  const auto tokens = Tokens(200, m->config.vocab_size);
  for (bool fisher : {false, true}) {
    for (KeyPosition keys : {KeyPosition::kPostRope, KeyPosition::kPreRope}) {
      CalibrationOptions opt;
      opt.config = CqConfig::Parse("4c4b");
      opt.fisher = fisher;
      opt.keys = keys;
      opt.n_seqs = 3;
      opt.seq_len = 64;
      const CodebookSet set = Calibrate(*m, tokens, opt, pool);
      EXPECT_EQ(set.n_layers, m->config.n_layers);
      EXPECT_EQ(set.model_fingerprint, ModelFingerprint(*m));
      EXPECT_EQ(set.fisher, fisher);
      ASSERT_EQ(set.objective.size(), size_t{4});
      for (double o : set.objective) {
        EXPECT_TRUE(std::isfinite(o));
        EXPECT_GE(o, 0.0);
      }
      for (const auto& c : set.centroids) {
        for (float x : c) ASSERT_TRUE(std::isfinite(x));
      }
    }
  }
}

// With 2^b >= the number of calibration vectors every vector is its own centroid, so the
// calibration windows themselves are reproduced exactly: same perplexity as fp32 on them.
TEST(Calibrate, EnoughCentroidsReproduceCalibrationWindowsExactly) {
  auto m = testing::MakeRandomModel(testing::SmallConfig(), 32, 0.3f);
  ThreadPool pool(2);
  const auto tokens = Tokens(64, m->config.vocab_size);
  CalibrationOptions opt;
  opt.config = CqConfig::Parse("2c8b");  // 256 centroids >= 64 tokens
  opt.n_seqs = 1;
  opt.seq_len = 64;
  const CodebookSet set = Calibrate(*m, tokens, opt, pool);
  const std::string path = ::testing::TempDir() + "/calib_exact.cqcb";
  SaveCodebooks(set, path);
  PerplexityOptions p;
  p.ctx = 64;
  p.kv = "cq:" + path;
  p.kl_base = "fp32";
  const auto r = EvalPerplexity(*m, tokens, p, pool);
  EXPECT_NEAR(r.ppl, r.base_ppl, 1e-4 * r.base_ppl);
  EXPECT_LT(r.kld, 1e-8);
}

TEST(Calibrate, BadOptionsAreClearErrors) {
  auto m = testing::MakeRandomModel(testing::SmallConfig(), 33);
  ThreadPool pool(1);
  CalibrationOptions opt;
  opt.config = CqConfig::Parse("3c8b");  // head dim 16 is not a multiple of 3
  opt.n_seqs = 1;
  opt.seq_len = 16;
  EXPECT_THROW(Calibrate(*m, Tokens(100, 50), opt, pool), Error);
  opt.config = CqConfig::Parse("4c8b");
  opt.n_seqs = 10;  // 160 tokens needed, 100 given
  EXPECT_THROW(Calibrate(*m, Tokens(100, 50), opt, pool), Error);
  opt.n_seqs = 1;
  opt.seq_len = 1000;  // beyond the model context of 128
  EXPECT_THROW(Calibrate(*m, Tokens(2000, 50), opt, pool), Error);
}

TEST(Calibrate, ParsesTokensSpec) {
  int s = 0, l = 0;
  ParseTokensSpec("16x2048", &s, &l);
  EXPECT_EQ(s, 16);
  EXPECT_EQ(l, 2048);
  for (const char* bad : {"16", "x256", "16x", "0x256", "16x256x2", "ax2"}) {
    EXPECT_THROW(ParseTokensSpec(bad, &s, &l), Error) << bad;
  }
}

}  // namespace
}  // namespace cqkv
