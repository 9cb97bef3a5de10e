#include "kernels/rope.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "util/error.h"

namespace cqkv {
namespace {

RopeParams Params(RopeType type, float base, float scale = 1.0f, std::vector<float> factors = {}) {
  RopeParams p;
  p.type = type;
  p.freq_base = base;
  p.freq_scale = scale;
  p.freq_factors = std::move(factors);
  return p;
}

TEST(Rope, PositionZeroIsIdentity) {
  std::vector<float> x{1, 2, 3, 4, 5, 6, 7, 8};
  auto y = x;
  ApplyRope(y.data(), 2, 4, 0, Params(RopeType::kNorm, 10000.0f));
  EXPECT_EQ(x, y);
}

// Closed form: pair 0 rotates by theta = pos (base^0 = 1); pair i by pos * base^(-2i/d).
TEST(Rope, NormPairsConsecutiveChannels) {
  std::vector<float> x{1, 0, 1, 0};  // head_dim 4: pairs (0,1) and (2,3)
  ApplyRope(x.data(), 1, 4, 3, Params(RopeType::kNorm, 100.0f));
  EXPECT_NEAR(x[0], std::cos(3.0), 1e-6);
  EXPECT_NEAR(x[1], std::sin(3.0), 1e-6);
  const double t1 = 3.0 * std::pow(100.0, -2.0 / 4);
  EXPECT_NEAR(x[2], std::cos(t1), 1e-6);
  EXPECT_NEAR(x[3], std::sin(t1), 1e-6);
}

TEST(Rope, NeoxPairsHalves) {
  std::vector<float> x{1, 1, 0, 0};  // pairs (0,2) and (1,3)
  ApplyRope(x.data(), 1, 4, 3, Params(RopeType::kNeox, 100.0f));
  EXPECT_NEAR(x[0], std::cos(3.0), 1e-6);
  EXPECT_NEAR(x[2], std::sin(3.0), 1e-6);
  const double t1 = 3.0 * std::pow(100.0, -2.0 / 4);
  EXPECT_NEAR(x[1], std::cos(t1), 1e-6);
  EXPECT_NEAR(x[3], std::sin(t1), 1e-6);
}

// Llama-3.1 frequency factors divide pair i's angle; linear scaling multiplies every angle
// (llama.cpp: theta = freq_scale * pos * base^(-2i/d) / factor_i).
TEST(Rope, FactorsDivideAndScaleMultipliesTheAngle) {
  std::vector<float> x{1, 0, 1, 0};
  ApplyRope(x.data(), 1, 4, 3, Params(RopeType::kNorm, 100.0f, 0.25f, {2.0f, 8.0f}));
  const double t0 = 0.25 * 3.0 / 2.0, t1 = 0.25 * 3.0 * std::pow(100.0, -2.0 / 4) / 8.0;
  EXPECT_NEAR(x[0], std::cos(t0), 1e-6);
  EXPECT_NEAR(x[1], std::sin(t0), 1e-6);
  EXPECT_NEAR(x[2], std::cos(t1), 1e-6);
  EXPECT_NEAR(x[3], std::sin(t1), 1e-6);
}

TEST(Rope, CheckRopeParamsNamesWhatIsWrong) {
  EXPECT_NO_THROW(CheckRopeParams(Params(RopeType::kNeox, 1e6f, 0.5f, {1, 2}), 4, "m"));
  auto fails = [](const RopeParams& p, int hd, const std::string& part) {
    try {
      CheckRopeParams(p, hd, "model.gguf");
      ADD_FAILURE() << "accepted: " << part;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("model.gguf"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  fails(Params(RopeType::kNorm, NAN), 4, "base");
  fails(Params(RopeType::kNorm, 1e4f, INFINITY), 4, "scale");
  fails(Params(RopeType::kNorm, 1e4f, 1.0f, {1, 2, 3}), 4, "3 RoPE frequency factors");
  fails(Params(RopeType::kNorm, 1e4f, 1.0f, {1, 0}), 4, "factor 1");
  fails(Params(RopeType::kNorm, 1e4f), 5, "even head size");
}

// Attention scores depend only on relative position: <R(p)q, R(p+k)k> is the same for all p.
TEST(Rope, ScoresDependOnRelativePosition) {
  for (RopeType type : {RopeType::kNorm, RopeType::kNeox}) {
    std::vector<float> q0{0.3f, -1.2f, 0.7f, 2.0f, -0.5f, 0.1f, 1.1f, -0.9f};
    std::vector<float> k0{1.0f, 0.4f, -0.6f, 0.2f, 0.9f, -1.3f, 0.5f, 0.8f};
    double first = 0;
    for (int64_t p : {0, 5, 100, 1000}) {
      auto q = q0, k = k0;
      ApplyRope(q.data(), 1, 8, p + 7, Params(type, 10000.0f));
      ApplyRope(k.data(), 1, 8, p, Params(type, 10000.0f));
      double dot = 0;
      for (int i = 0; i < 8; ++i) dot += double(q[i]) * k[i];
      if (p == 0) first = dot;
      EXPECT_NEAR(dot, first, 1e-4);
    }
  }
}

}  // namespace
}  // namespace cqkv

namespace cqkv {
namespace {

TEST(RopeTable, MatchesApplyRopeAndInverts) {
  for (RopeType type : {RopeType::kNorm, RopeType::kNeox}) {
    const RopeTable table(16, 300, Params(type, 10000.0f, 0.5f, {1, 2, 8, 1, 1, 3, 1, 4}));
    for (int64_t pos : {0, 1, 17, 299}) {
      std::vector<float> x(16), y(16);
      for (int i = 0; i < 16; ++i) x[i] = y[i] = 0.1f * i - 0.7f;
      ApplyRope(x.data(), 1, 16, pos, Params(type, 10000.0f, 0.5f, {1, 2, 8, 1, 1, 3, 1, 4}));
      table.Rotate(y.data(), pos);
      for (int i = 0; i < 16; ++i) EXPECT_FLOAT_EQ(x[i], y[i]);
      table.Rotate(y.data(), pos, /*inverse=*/true);
      for (int i = 0; i < 16; ++i) EXPECT_NEAR(y[i], 0.1f * i - 0.7f, 1e-6);
    }
  }
}

}  // namespace
}  // namespace cqkv
