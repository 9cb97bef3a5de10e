#include "calibrate/calibrate.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "calibrate/calibrate_testing.h"
#include "eval/perplexity.h"
#include "loader/loader.h"
#include "model/backward.h"
#include "model/fingerprint.h"
#include "quant/kmeans.h"
#include "random_model.h"
#include "test_util.h"
#include "util/error.h"

namespace cqkv {
namespace {

using testing::Tokens;

TEST(Calibrate, ProducesCompatibleCodebooksForBothKeyPositionsAndWeightings) {
  auto m = testing::MakeRandomModel(testing::SmallConfig(), 31, 0.3f);
  ThreadPool pool(2);
  const auto tokens = Tokens(200, m->config.vocab_size);
  for (bool fisher : {false, true}) {
    for (KeyPosition keys : {KeyPosition::kPostRope, KeyPosition::kPreRope}) {
      const CalibrationOptions opt = testing::SmallOptions(fisher, keys);
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

// Calibration as it was before layers were streamed, written out independently: every window's
// full-network activations (ForwardBackwardKv), every layer's rows in memory, one k-means per
// (layer, kind, group) seeded seed + its index. The streamed calibration must equal it exactly.
CodebookSet AllLayersInMemory(const Model& model, const std::vector<int32_t>& tokens,
                              const CalibrationOptions& opt) {
  ThreadPool pool(1);
  const int L = model.config.n_layers, kv_dim = model.config.kv_dim(), c = opt.config.channels;
  const int n_groups = kv_dim / c, k = opt.config.n_centroids();
  const int64_t need = int64_t{opt.n_seqs} * opt.seq_len;
  const bool pre = opt.keys == KeyPosition::kPreRope;
  std::vector<std::vector<float>> x(2 * L), g(2 * L);  // per (layer, kind): (need, kv_dim)
  for (int s = 0; s < opt.n_seqs; ++s) {
    KvActivations acts;
    KvGradients grads;
    ForwardBackwardKv(model,
                      std::span<const int32_t>(tokens.data() + int64_t{s} * opt.seq_len,
                                               static_cast<size_t>(opt.seq_len)),
                      pool, &acts, opt.fisher ? &grads : nullptr);
    for (int l = 0; l < L; ++l) {
      x[2 * l].insert(x[2 * l].end(), (pre ? acts.k_pre : acts.k)[l].begin(),
                      (pre ? acts.k_pre : acts.k)[l].end());
      x[2 * l + 1].insert(x[2 * l + 1].end(), acts.v[l].begin(), acts.v[l].end());
      if (!opt.fisher) continue;
      g[2 * l].insert(g[2 * l].end(), (pre ? grads.dk_pre : grads.dk)[l].begin(),
                      (pre ? grads.dk_pre : grads.dk)[l].end());
      g[2 * l + 1].insert(g[2 * l + 1].end(), grads.dv[l].begin(), grads.dv[l].end());
    }
  }
  CodebookSet set;
  set.objective.assign(2 * L, 0.0);
  set.centroids.assign(2 * L, std::vector<float>(static_cast<size_t>(n_groups) * k * c));
  for (int lk = 0; lk < 2 * L; ++lk) {
    for (int grp = 0; grp < n_groups; ++grp) {
      std::vector<float> sub, w;
      for (int64_t t = 0; t < need; ++t) {
        double ss = 0;
        for (int j = 0; j < c; ++j) {
          sub.push_back(x[lk][t * kv_dim + grp * c + j]);
          if (opt.fisher)
            ss += double(g[lk][t * kv_dim + grp * c + j]) * g[lk][t * kv_dim + grp * c + j];
        }
        if (opt.fisher) w.push_back(static_cast<float>(ss));
      }
      KMeansParams kp;
      kp.k = k;
      kp.max_iter = opt.max_iter;
      kp.n_init = opt.n_init;
      kp.seed = opt.seed + static_cast<uint64_t>(int64_t{lk} * n_groups + grp);
      const KMeansResult r = KMeans(ConstMat(sub.data(), need, c), w, kp, nullptr);
      std::copy(r.centroids.begin(), r.centroids.end(), set.centroids[lk].begin() + grp * k * c);
      set.objective[lk] += r.objective;
    }
    set.objective[lk] /= n_groups;
  }
  return set;
}

// stories260K (5 layers, 4 KV heads of 8 channels): spilled to disk, kept in memory and the
// reference above give the same codebooks bit for bit, for both weightings and key positions
// (the spill keeps every row's float and order, the seeds follow the same numbering).
TEST(Calibrate, StreamedSpillEqualsAllLayersInMemory) {
  constexpr const char* kStories = "models/stories260K/model.bin";
  CQKV_REQUIRE_SHARED(kStories);
  const auto model = LoadModel(testing::SharedPath(kStories));
  const auto tokens = Tokens(4 * 64, model->config.vocab_size);
  ThreadPool pool(2);
  for (bool fisher : {false, true}) {
    for (KeyPosition keys : {KeyPosition::kPostRope, KeyPosition::kPreRope}) {
      CalibrationOptions opt;
      opt.config = CqConfig::Parse("2c6b");
      opt.fisher = fisher;
      opt.keys = keys;
      opt.n_seqs = 4;
      opt.seq_len = 64;
      opt.max_iter = 20;
      SCOPED_TRACE(::testing::Message()
                   << "fisher " << fisher << " pre-RoPE " << (keys == KeyPosition::kPreRope));
      const CalibrationStats stats = testing::ExpectInMemoryAndSpilledGive(
          AllLayersInMemory(*model, tokens, opt), *model, tokens, opt, pool);
      const int64_t rows = 4 * 64 * 2 * model->config.n_layers;
      EXPECT_EQ(stats.spill_bytes,
                rows * 4 * (model->config.kv_dim() + (fisher ? model->config.kv_dim() / 2 : 0)));
    }
  }
}

// The same on block-quantised synthetic models (the weight types `calibrate --synthetic 7b:q4_0`
// measures memory with): spilling activations and, with Fisher, the backward pass's layer
// checkpoints to files changes no bit of the codebooks.
TEST(Calibrate, StreamedSpillEqualsAllLayersInMemoryOnQuantisedWeights) {
  ModelConfig mc = testing::SmallConfig();  // every width a multiple of the 32-element blocks
  mc.n_layers = 3;
  const auto tokens = Tokens(3 * 32, mc.vocab_size);
  ThreadPool pool(2);
  for (DType type : {DType::kQ4_0, DType::kQ8_0}) {
    const auto model = MakeSyntheticModel(mc, 41, 0.3f, type);
    for (bool fisher : {false, true}) {
      CalibrationOptions opt;
      opt.config = CqConfig::Parse("2c4b");
      opt.fisher = fisher;
      opt.n_seqs = 3;
      opt.seq_len = 32;
      opt.max_iter = 10;
      SCOPED_TRACE(::testing::Message() << DTypeName(type) << " fisher " << fisher);
      const CalibrationStats stats = testing::ExpectInMemoryAndSpilledGive(
          AllLayersInMemory(*model, tokens, opt), *model, tokens, opt, pool);
      EXPECT_EQ(stats.checkpoint_bytes,
                fisher ? int64_t{4} * 3 * 32 * mc.n_layers * 2 * mc.dim : 0);
    }
  }
}

int SpillDirectoriesIn(const std::string& dir) {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    n += e.path().filename().string().rfind("cqkv-calibrate-", 0) == 0;
  }
  return n;
}

TEST(Calibrate, SpillIsRemovedAfterSuccessAndFailure) {
  auto m = testing::MakeRandomModel(testing::SmallConfig(), 34, 0.3f);
  ThreadPool pool(2);
  const std::string dir = ::testing::TempDir() + "/calib_spill_cleanup";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  CalibrationOptions opt;
  opt.config = CqConfig::Parse("4c4b");
  opt.fisher = true;
  opt.n_seqs = 2;
  opt.seq_len = 32;
  opt.spill_dir = dir;
  std::vector<int32_t> tokens = Tokens(64, m->config.vocab_size);
  Calibrate(*m, tokens, opt, pool);
  EXPECT_EQ(SpillDirectoriesIn(dir), 0);
  tokens[40] = m->config.vocab_size;  // the second window fails after the first was spilled
  testing::ExpectErrorMentioning([&] { Calibrate(*m, tokens, opt, pool); },
                                 {"outside the vocabulary"});
  EXPECT_EQ(SpillDirectoriesIn(dir), 0);
  opt.spill_dir = dir + "/missing";
  testing::ExpectErrorMentioning([&] { Calibrate(*m, tokens, opt, pool); }, {dir + "/missing"});
}

TEST(Calibrate, ProgressCountsWindowsThenFits) {
  auto m = testing::MakeRandomModel(testing::SmallConfig(), 35, 0.3f);
  ThreadPool pool(1);
  CalibrationOptions opt;
  opt.config = CqConfig::Parse("4c4b");
  opt.n_seqs = 3;
  opt.seq_len = 16;
  std::vector<std::string> stages;
  int64_t last_done = 0;
  Calibrate(*m, Tokens(48, m->config.vocab_size), opt, pool, [&](const CalibrationStatus& s) {
    if (stages.empty() || stages.back() != s.stage) {
      stages.push_back(s.stage);
      last_done = 0;
    }
    EXPECT_GE(s.done, last_done);
    EXPECT_LE(s.done, s.total);
    last_done = s.done;
    EXPECT_EQ(s.total, stages.back() == "windows" ? 3 : 2 * 2 * (m->config.kv_dim() / 4));
  });
  EXPECT_EQ(stages, (std::vector<std::string>{"windows", "k-means"}));
  EXPECT_EQ(last_done, 2 * 2 * (m->config.kv_dim() / 4));
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
