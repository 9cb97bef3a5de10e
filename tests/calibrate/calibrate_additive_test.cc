// Calibrate with --values additive: the hook into quant/additive_codebook.h.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "calibrate/calibrate.h"
#include "calibrate/calibrate_testing.h"
#include "quant/additive.h"
#include "random_model.h"

namespace cqkv {
namespace {

// Keys are the same k-means either way; values are additive: their tables are exactly the
// expansions of the stored bases, and their objective is positive and, for this data, not below
// k-means' with as many centroids (a constrained fit; both are local optima, so this pins the
// expected direction on fixed seeds rather than a theorem).
TEST(CalibrateAdditive, ValuesAreAdditiveKeysUnchanged) {
  auto m = testing::MakeRandomModel(testing::SmallConfig(), 41, 0.3f);
  ThreadPool pool(2);
  const auto tokens = testing::Tokens(200, m->config.vocab_size);
  CalibrationOptions opt = testing::SmallOptions(/*fisher=*/true, KeyPosition::kPreRope);
  const CodebookSet km = Calibrate(*m, tokens, opt, pool);
  opt.values = ValueKind::kAdditive;
  const CodebookSet add = Calibrate(*m, tokens, opt, pool);
  EXPECT_EQ(km.values, ValueKind::kKMeans);
  ASSERT_EQ(add.values, ValueKind::kAdditive);
  ASSERT_EQ(add.value_basis.size(), static_cast<size_t>(add.n_layers));
  std::vector<float> expanded(16 * 4);
  for (int l = 0; l < add.n_layers; ++l) {
    EXPECT_EQ(add.centroids[2 * l], km.centroids[2 * l]);
    EXPECT_EQ(add.objective[2 * l], km.objective[2 * l]);
    EXPECT_GE(add.objective[2 * l + 1], km.objective[2 * l + 1] * (1 - 1e-6));
    EXPECT_GT(add.objective[2 * l + 1], 0.0);
    for (int g = 0; g < add.n_groups(); ++g) {
      ExpandAdditive(add.ValueBasis(l, g), 4, 4, expanded.data());
      ASSERT_EQ(std::memcmp(expanded.data(), add.Table(l, 1, g), expanded.size() * 4), 0);
    }
  }
}

}  // namespace
}  // namespace cqkv
