// Calibrate with --values residual: the hook into quant/residual_codebook.h.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "calibrate/calibrate.h"
#include "calibrate/calibrate_testing.h"
#include "eval/perplexity.h"
#include "quant/residual.h"
#include "random_model.h"
#include "test_util.h"

namespace cqkv {
namespace {

// Keys are the same k-means either way; values are residual: their tables are exactly the
// expansions of the stored stages, the objective is positive and not below k-means' with as
// many free centroids (32 constrained vectors for 16 codes at 4c4b: 8 stage vectors; both are
// local optima, so this pins the expected direction on fixed seeds rather than a theorem). The
// spilled and in-memory paths give the same stages bit for bit.
TEST(CalibrateResidual, ValuesAreResidualKeysUnchanged) {
  auto m = testing::MakeRandomModel(testing::SmallConfig(), 41, 0.3f);
  ThreadPool pool(2);
  const auto tokens = testing::Tokens(200, m->config.vocab_size);
  CalibrationOptions opt = testing::SmallOptions(/*fisher=*/true, KeyPosition::kPreRope);
  const CodebookSet km = Calibrate(*m, tokens, opt, pool);
  opt.values = ValueKind::kResidual;
  const CodebookSet res = Calibrate(*m, tokens, opt, pool);
  ASSERT_EQ(res.values, ValueKind::kResidual);
  ASSERT_EQ(res.value_basis.size(), static_cast<size_t>(res.n_layers));
  ASSERT_EQ(res.value_basis_rows(), 8);
  std::vector<float> expanded(16 * 4);
  for (int l = 0; l < res.n_layers; ++l) {
    EXPECT_EQ(res.centroids[2 * l], km.centroids[2 * l]);
    EXPECT_EQ(res.objective[2 * l], km.objective[2 * l]);
    EXPECT_GE(res.objective[2 * l + 1], km.objective[2 * l + 1] * (1 - 1e-6));
    EXPECT_GT(res.objective[2 * l + 1], 0.0);
    for (int g = 0; g < res.n_groups(); ++g) {
      ExpandResidual(res.ValueBasis(l, g), 4, 4, expanded.data());
      ASSERT_EQ(std::memcmp(expanded.data(), res.Table(l, 1, g), expanded.size() * 4), 0);
    }
  }
  opt.spill_dir = ::testing::TempDir();
  const CodebookSet spilled = Calibrate(*m, tokens, opt, pool);
  EXPECT_EQ(spilled.value_basis, res.value_basis);
  EXPECT_EQ(spilled.centroids, res.centroids);
}

// End to end through a model: perplexity with residual values decodes on the exact path from the
// expanded tables, so it equals, bit for bit, perplexity with the same tables saved as k-means
// values (with and without an fp16 window).
TEST(CalibrateResidual, PerplexityEqualsKMeansWithTheExpandedTables) {
  auto m = testing::MakeRandomModel(testing::SmallConfig(), 41, 0.3f);
  ThreadPool pool(2);
  const auto tokens = testing::Tokens(200, m->config.vocab_size);
  CalibrationOptions opt = testing::SmallOptions(/*fisher=*/true, KeyPosition::kPreRope);
  opt.values = ValueKind::kResidual;
  CodebookSet set = Calibrate(*m, tokens, opt, pool);
  const std::string res = ::testing::TempDir() + "/cqkv_residual_e2e.cqcb";
  const std::string km = ::testing::TempDir() + "/cqkv_residual_e2e_as_kmeans.cqcb";
  SaveCodebooks(set, res);
  set.values = ValueKind::kKMeans;
  set.value_basis.clear();
  SaveCodebooks(set, km);
  for (const char* window : {"", ":r8"}) {
    PerplexityOptions p;
    p.ctx = 64;
    p.max_windows = 2;
    p.kv = "cq:" + res + window;
    const PerplexityResult a = EvalPerplexity(*m, tokens, p, pool);
    p.kv = "cq:" + km + window;
    const PerplexityResult b = EvalPerplexity(*m, tokens, p, pool);
    EXPECT_EQ(a.nll, b.nll) << window;
    EXPECT_GT(a.nll, 0.0);
  }
  std::remove(res.c_str());
  std::remove(km.c_str());
}

// An odd code size cannot be split into two stages: refused before the model runs.
TEST(CalibrateResidual, OddCodeSizesAreRefused) {
  auto m = testing::MakeRandomModel(testing::SmallConfig(), 41, 0.3f);
  ThreadPool pool(2);
  CalibrationOptions opt = testing::SmallOptions(/*fisher=*/false, KeyPosition::kPostRope);
  opt.values = ValueKind::kResidual;
  opt.config = CqConfig{4, 5};
  testing::ExpectErrorMentioning(
      [&] { Calibrate(*m, testing::Tokens(200, m->config.vocab_size), opt, pool); },
      {"--values residual", "4c5b", "even"});
}

}  // namespace
}  // namespace cqkv
