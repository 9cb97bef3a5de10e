#include "model/synthetic.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/dequant.h"
#include "test_util.h"
#include "util/error.h"

namespace cqkv {
namespace {

// Big enough for sub-percent moment checks (2.65 M matrix weights), small enough to build in a
// blink. Every width is a multiple of the 32-element Q8_0/Q4_0 block.
ModelConfig MomentConfig() {
  ModelConfig c;
  c.dim = 256;
  c.hidden_dim = 512;
  c.n_layers = 4;
  c.n_heads = 4;
  c.n_kv_heads = 4;
  c.vocab_size = 64;
  c.max_seq_len = 64;
  return c;
}

std::vector<const WeightMatrix*> Matrices(const Model& m) {
  const ModelWeights& w = m.weights;
  std::vector<const WeightMatrix*> out = {&w.tok_embd, &w.output};
  for (const LayerWeights& l : w.layers) {
    for (const WeightMatrix* x : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) {
      out.push_back(x);
    }
  }
  return out;
}

std::vector<float> Row(const WeightMatrix& w, int64_t r) {
  std::vector<float> out(static_cast<size_t>(w.cols));
  DequantizeRowRef(w.type, w.RowPtr(r), w.cols, out.data());
  return out;
}

TEST(SyntheticModel, SameSeedSameBytesOtherSeedOtherWeights) {
  for (DType t : {DType::kQ8_0, DType::kQ4_0, DType::kF16}) {
    const auto a = MakeSyntheticModel(MomentConfig(), 7, 0.05f, t);
    const auto b = MakeSyntheticModel(MomentConfig(), 7, 0.05f, t);
    const auto c = MakeSyntheticModel(MomentConfig(), 8, 0.05f, t);
    const auto ma = Matrices(*a), mb = Matrices(*b), mc = Matrices(*c);
    for (size_t i = 0; i < ma.size(); ++i) {
      ASSERT_EQ(ma[i]->type, t);
      const size_t bytes = static_cast<size_t>(ma[i]->rows * DTypeRowBytes(t, ma[i]->cols));
      EXPECT_EQ(std::memcmp(ma[i]->data, mb[i]->data, bytes), 0) << DTypeName(t) << " " << i;
      EXPECT_NE(std::memcmp(ma[i]->data, mc[i]->data, bytes), 0) << DTypeName(t) << " " << i;
    }
  }
}

// Each stored type encodes the numbers the F32 model of the same seed holds, so the element
// errors obey the quantisers' own bounds (M = the block's largest |x| <= scale, d its scale,
// rounded to fp16 with relative error <= 2^-11):
//   Q8_0  d = M / 127, |err| <= d / 2 + 127 |d - fp16(d)| <= (0.5 + 127 / 2048) M / 127;
//   Q4_0  d = M / 8 and the value opposite the extreme is clamped from -8 d to -7 d, so
//         |err| <= d + 8 |d - fp16(d)| <= 1.004 M / 8.
TEST(SyntheticModel, QuantisedModelIsTheF32ModelQuantised) {
  constexpr float kScale = 0.05f;
  const auto f32 = MakeSyntheticModel(MomentConfig(), 3, kScale, DType::kF32);
  struct Case {
    DType type;
    double bound;
  };
  for (Case k : {Case{DType::kQ8_0, 0.563 * kScale / 127}, Case{DType::kQ4_0, 1.004 * kScale / 8},
                 Case{DType::kF16, kScale / 2048.0}}) {
    const auto q = MakeSyntheticModel(MomentConfig(), 3, kScale, k.type);
    const auto mf = Matrices(*f32), mq = Matrices(*q);
    double worst = 0;
    for (size_t i = 0; i < mf.size(); ++i) {
      for (int64_t r = 0; r < mf[i]->rows; ++r) {
        const auto x = Row(*mf[i], r), y = Row(*mq[i], r);
        for (size_t j = 0; j < x.size(); ++j)
          worst = std::max(worst, double{std::fabs(y[j] - x[j])});
      }
    }
    EXPECT_LE(worst, k.bound) << DTypeName(k.type);
    EXPECT_GT(worst, k.bound / 4) << DTypeName(k.type) << ": suspiciously exact";
    // The norm gains are F32 in every model: identical draws.
    EXPECT_EQ(std::memcmp(q->weights.layers[1].ffn_norm, f32->weights.layers[1].ffn_norm,
                          sizeof(float) * 256),
              0);
  }
}

// Closed-form moments of the dequantised weights, for x uniform in [-s, s) (mean 0, E x^2 =
// s^2 / 3) in blocks of 32 whose largest |x| is M (E M^2 = s^2 32 / 34):
//   Q8_0  the extreme is kept, the rest gain rounding noise of variance (M / 127)^2 / 12:
//         E y^2 / (s^2 / 3) = 1 + 3 (31 / 32) (32 / 34) / (127^2 12) = 1.000014.
//   Q4_0  grid k M / 8 for k = -7..8: cells of width M / 8, the one at +8 M / 8 half as wide
//         and the one at -7 M / 8 1.5 times as wide (the clamp), so for a non-extreme value
//         E y^2 = (M / 8)^2 / 16 (sum_{k=-6..7} k^2 + 1.5 * 49 + 0.5 * 64) = 0.328613 M^2 and
//         E y^2 = E M^2 (31 * 0.328613 + 1) / 32 = 0.329055 s^2, i.e. 0.987166 s^2 / 3.
//   (a NumPy simulation of both quantisers over 12.8 M values gives 1.000117 and 0.987218.)
// Tolerances: over N = 2.65 M values the sample E y^2 has relative standard error
// sqrt(4 / 45) / (1 / 3) / sqrt(N) = 0.055% and the mean 0.36e-3 s, so 0.4% and 2e-3 s are
// more than 6 standard errors, while Q8_0 and Q4_0 differ by 1.3%.
TEST(SyntheticModel, DequantisedWeightsHaveTheClosedFormMoments) {
  constexpr float kScale = 0.02f;
  struct Case {
    DType type;
    double ratio;
  };
  for (Case k : {Case{DType::kQ8_0, 1.000014}, Case{DType::kQ4_0, 0.987166}}) {
    const auto m = MakeSyntheticModel(MomentConfig(), 11, kScale, k.type);
    double sum = 0, sum2 = 0, max_abs = 0;
    int64_t n = 0;
    for (const WeightMatrix* w : Matrices(*m)) {
      for (int64_t r = 0; r < w->rows; ++r) {
        for (float y : Row(*w, r)) {
          sum += y;
          sum2 += double{y} * y;
          max_abs = std::max(max_abs, double{std::fabs(y)});
        }
      }
      n += w->rows * w->cols;
    }
    ASSERT_GT(n, 2'600'000);
    const double s2 = double{kScale} * kScale / 3;
    EXPECT_NEAR(sum / n, 0.0, 2e-3 * kScale) << DTypeName(k.type);
    EXPECT_NEAR(sum2 / n / s2, k.ratio, 4e-3) << DTypeName(k.type);
    EXPECT_LE(max_abs, kScale * (1 + 1.0 / 1024)) << DTypeName(k.type);  // fp16 block scale
  }
}

TEST(SyntheticModel, RejectsTypesItCannotEncode) {
  testing::ExpectErrorMentioning([] { MakeSyntheticModel(MomentConfig(), 1, 0.1f, DType::kQ4_K); },
                                 {"Q4_K"});
  ModelConfig c = MomentConfig();
  c.hidden_dim = 80;  // not a multiple of 32
  testing::ExpectErrorMentioning([&] { MakeSyntheticModel(c, 1, 0.1f, DType::kQ4_0); },
                                 {"Q4_0", "32", "hidden 80"});
}

TEST(SyntheticModel, ParsesSpecs) {
  const SyntheticSpec d{32, 32, DType::kF16};
  SyntheticSpec s = ParseSyntheticSpec("7b", d);
  EXPECT_EQ(s.n_layers, 32);
  EXPECT_EQ(s.weights, DType::kF16);
  s = ParseSyntheticSpec("7b:q4_0:layers=4", d);
  EXPECT_EQ(s.n_layers, 4);
  EXPECT_EQ(s.n_kv_heads, 32);
  EXPECT_EQ(s.weights, DType::kQ4_0);
  EXPECT_EQ(s.Name(), "synthetic-7b-4L-kvh32-q4_0");
  s = ParseSyntheticSpec("7B:kvh=8:Q8_0", d);
  EXPECT_EQ(s.n_kv_heads, 8);
  EXPECT_EQ(s.weights, DType::kQ8_0);
  testing::ExpectErrorMentioning([&] { ParseSyntheticSpec("13b", d); }, {"--synthetic", "13b"});
  testing::ExpectErrorMentioning([&] { ParseSyntheticSpec("7b:q3_k", d); }, {"q3_k", "q4_0"});
  testing::ExpectErrorMentioning([&] { ParseSyntheticSpec("7b:layers=0", d); }, {"1..32"});
  testing::ExpectErrorMentioning([&] { ParseSyntheticSpec("7b:layers=4x", d); },
                                 {"layers=4x", "whole number"});
  testing::ExpectErrorMentioning([&] { ParseSyntheticSpec("7b:kvh=3", d); }, {"kvh"});
}

}  // namespace
}  // namespace cqkv
