// K/V gradients (model/backward.h) against central finite differences of the loss computed by
// the production forward pass (LlamaForward), perturbed through a KV-cache wrapper, so the check
// shares no code with the backward pass.
#include "model/backward.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "eval/perplexity.h"
#include "kernels/dequant.h"
#include "kernels/matmul.h"
#include "kernels/rope.h"
#include "model/attention_backward.h"
#include "model/kv_shape.h"
#include "model/llama.h"
#include "model/rms_norm.h"
#include "model/synthetic.h"
#include "util/error.h"

namespace cqkv {
namespace {

enum class Target { kK, kKPre, kV };

// An fp32 cache that adds `delta` to one (layer, token, channel) of the K (after RoPE), the
// pre-RoPE key (then rotated again, so the stored key is R(pos) (k_pre + delta e_c)) or V of
// each appended block, and records the blocks it saw.
class PerturbingCache final : public KvCache {
 public:
  PerturbingCache(const KvShape& shape, int layer, int64_t token, int channel, Target target,
                  float delta)
      : KvCache(shape, nullptr),
        inner_(MakeKvCache("fp32", shape)),
        layer_(layer),
        token_(token),
        channel_(channel),
        target_(target),
        delta_(delta),
        k_pre_(shape.n_layers),
        k_(shape.n_layers),
        v_(shape.n_layers) {}

  std::string format() const override { return "perturbed-fp32"; }
  // A test wrapper: its tokens live in the wrapped cache, never in pages of its own.
  int64_t PageBytes() const override { return inner_->PageBytes(); }
  std::unique_ptr<KvCache> NewSibling(std::shared_ptr<PagePool>) const override {
    throw Error("test wrapper cache has no siblings");
  }

  void Append(int layer, const KvBlock& block) override {
    const int64_t n = block.k.rows, kv_dim = shape_.kv_dim();
    std::vector<float> kp(static_cast<size_t>(n * kv_dim)), k(kp.size()), v(kp.size());
    for (int64_t i = 0; i < n; ++i) {
      std::memcpy(&kp[i * kv_dim], block.k_pre.Row(i), kv_dim * sizeof(float));
      std::memcpy(&k[i * kv_dim], block.k.Row(i), kv_dim * sizeof(float));
      std::memcpy(&v[i * kv_dim], block.v.Row(i), kv_dim * sizeof(float));
    }
    const int64_t row = token_ - block.pos0;
    if (layer == layer_ && row >= 0 && row < n) {
      float* kpr = &kp[row * kv_dim];
      float* kr = &k[row * kv_dim];
      switch (target_) {
        case Target::kK:
          kr[channel_] += delta_;
          break;
        case Target::kV:
          v[row * kv_dim + channel_] += delta_;
          break;
        case Target::kKPre:
          kpr[channel_] += delta_;
          std::memcpy(kr, kpr, kv_dim * sizeof(float));
          ApplyRope(kr, shape_.n_kv_heads, shape_.head_dim, token_, shape_.rope);
          break;
      }
    }
    k_pre_[layer].insert(k_pre_[layer].end(), kp.begin(), kp.end());
    k_[layer].insert(k_[layer].end(), k.begin(), k.end());
    v_[layer].insert(v_[layer].end(), v.begin(), v.end());
    inner_->Append(layer, KvBlock{block.pos0, ConstMat(kp.data(), n, kv_dim),
                                  ConstMat(k.data(), n, kv_dim), ConstMat(v.data(), n, kv_dim)});
  }
  void Attend(int layer, ConstMat q, int64_t pos0, Mat out, ThreadPool& pool) const override {
    inner_->Attend(layer, q, pos0, out, pool);
  }
  int64_t tokens(int layer) const override { return inner_->tokens(layer); }
  void Clear() override { inner_->Clear(); }
  double BytesPerToken() const override { return inner_->BytesPerToken(); }

  const std::vector<float>& k_pre(int l) const { return k_pre_[l]; }
  const std::vector<float>& k(int l) const { return k_[l]; }
  const std::vector<float>& v(int l) const { return v_[l]; }

 private:
  std::unique_ptr<KvCache> inner_;
  int layer_;
  int64_t token_;
  int channel_;
  Target target_;
  float delta_;
  std::vector<std::vector<float>> k_pre_, k_, v_;  // [layer] (tokens, kv_dim) as stored
};

// Summed NLL of tokens[1..n-1] from the production forward, log-softmax in double.
double ForwardLoss(const Model& m, const std::vector<int32_t>& ids, KvCache& cache,
                   ThreadPool& pool) {
  const int64_t n = static_cast<int64_t>(ids.size()), V = m.config.vocab_size;
  std::vector<float> logits(static_cast<size_t>(n * V));
  LlamaForward fwd(m, pool);
  fwd.Forward(ids, cache, Mat(logits.data(), n, V));
  double loss = 0;
  for (int64_t i = 0; i + 1 < n; ++i) {
    const float* row = logits.data() + i * V;
    double mx = -INFINITY, sum = 0;
    for (int64_t j = 0; j < V; ++j) mx = std::max(mx, double(row[j]));
    for (int64_t j = 0; j < V; ++j) sum += std::exp(row[j] - mx);
    loss += mx + std::log(sum) - row[ids[i + 1]];
  }
  return loss;
}

ModelConfig TinyGqaConfig() {
  ModelConfig c;
  c.dim = 32;
  c.hidden_dim = 48;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.vocab_size = 40;
  c.max_seq_len = 64;
  return c;
}

std::vector<int32_t> Tokens(int n, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& t : ids) t = static_cast<int32_t>(rng() % vocab);
  return ids;
}

// Weights of scale 0.5 make attention peaked and the K gradients O(0.1), so the check is not
// dominated by fp32 noise (at the default 0.1 attention is near uniform and dL/dK tiny).
constexpr float kWeightScale = 0.5f;

// qwen2/qwen3/Llama-3.1 features at once: head size 16 with dim 32 and 4 heads (q_dim 64 != dim),
// Q/K/V biases, per-head Q/K norms, NEOX pairs, linear scaling and frequency factors.
ModelConfig TinyArchConfig() {
  ModelConfig c = TinyGqaConfig();
  c.head_size = 16;
  c.attn_bias = true;
  c.qk_norm = true;
  c.rope.type = RopeType::kNeox;
  c.rope.freq_base = 100.0f;
  c.rope.freq_scale = 0.5f;
  c.rope.freq_factors = {1.0f, 2.0f, 1.0f, 4.0f, 8.0f, 1.0f, 1.5f, 32.0f};
  return c;
}

class ForwardBackwardKvFd : public ::testing::TestWithParam<bool> {};

TEST_P(ForwardBackwardKvFd, GradientsMatchFiniteDifferencesOfProductionForward) {
  const ModelConfig c = GetParam() ? TinyArchConfig() : TinyGqaConfig();
  auto m = MakeSyntheticModel(c, 21, kWeightScale);
  ThreadPool pool(2);
  const auto ids = Tokens(12, c.vocab_size, 5);
  const int64_t n = static_cast<int64_t>(ids.size());
  KvActivations acts;
  KvGradients g;
  ForwardBackwardKv(*m, ids, pool, &acts, &g);
  const KvShape shape = KvShapeFor(c, static_cast<int>(n));

  // Why eps = 1e-2 and this tolerance: the loss is O(40) and the fp32 forward computes it with
  // ~1e-7..1e-6 relative rounding noise (4e-6..4e-5 absolute), which a central difference
  // divides by 2 eps = 2e-2: up to ~2e-3 absolute, yet eps is small enough that the truncation
  // error eps^2 f''' / 6 stays ~1e-5. Hence |g - fd| <= 1e-2 max|g| + 1e-4 (max|g| is 0.5..3
  // here; observed max |g - fd| / max|g| ~3e-4), while a missing path or a wrong rotation
  // (dk_pre vs dk differ by O(max|g|)) is far outside it.
  constexpr float kEps = 1e-2f;
  double worst = 0;
  for (int l = 0; l < c.n_layers; ++l) {
    for (Target t : {Target::kK, Target::kKPre, Target::kV}) {
      const std::vector<float>& grad = t == Target::kK      ? g.dk[l]
                                       : t == Target::kKPre ? g.dk_pre[l]
                                                            : g.dv[l];
      double max_g = 0;
      for (float v : grad) max_g = std::max(max_g, double(std::fabs(v)));
      ASSERT_GT(max_g, 1e-3) << "gradients too small to test layer " << l;
      for (int64_t tok : {int64_t{0}, int64_t{3}, int64_t{7}, n - 2}) {
        for (int ch : {0, 5, 9, 14}) {
          PerturbingCache plus(shape, l, tok, ch, t, kEps), minus(shape, l, tok, ch, t, -kEps);
          const double fd =
              (ForwardLoss(*m, ids, plus, pool) - ForwardLoss(*m, ids, minus, pool)) / (2 * kEps);
          const double got = grad[tok * acts.kv_dim + ch];
          EXPECT_NEAR(got, fd, 1e-2 * max_g + 1e-4)
              << "layer " << l << " target " << int(t) << " token " << tok << " channel " << ch;
          worst = std::max(worst, std::fabs(got - fd) / max_g);
        }
      }
    }
  }
  std::printf("max |g - fd| / max|g| = %.3e\n", worst);
}

INSTANTIATE_TEST_SUITE_P(Configs, ForwardBackwardKvFd, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "ArchFeatures" : "Llama"; });

TEST(ForwardBackwardKv, ActivationsAndLossMatchTheProductionForward) {
  const ModelConfig c = TinyGqaConfig();
  auto m = MakeSyntheticModel(c, 22, kWeightScale);
  ThreadPool pool(2);
  const auto ids = Tokens(20, c.vocab_size, 6);
  const int64_t n = static_cast<int64_t>(ids.size());
  KvActivations acts;
  KvGradients g;
  ForwardBackwardKv(*m, ids, pool, &acts, &g);
  EXPECT_EQ(acts.n_tokens, n);
  EXPECT_EQ(g.n_predicted, n - 1);

  // delta 0: a recording cache; the K/V are what LlamaForward hands its cache.
  PerturbingCache rec(KvShapeFor(c, static_cast<int>(n)), 0, 0, 0, Target::kV, 0.0f);
  const double loss = ForwardLoss(*m, ids, rec, pool);
  EXPECT_NEAR(g.loss, loss, 1e-6 * loss);
  for (int l = 0; l < c.n_layers; ++l) {
    for (size_t e = 0; e < acts.k[l].size(); ++e) {
      ASSERT_NEAR(acts.k_pre[l][e], rec.k_pre(l)[e], 1e-6f) << l << " " << e;
      ASSERT_NEAR(acts.k[l][e], rec.k(l)[e], 1e-6f) << l << " " << e;
      ASSERT_NEAR(acts.v[l][e], rec.v(l)[e], 1e-6f) << l << " " << e;
    }
    // The last token's K/V only feed its own, unscored prediction.
    for (int ch = 0; ch < acts.kv_dim; ++ch) {
      EXPECT_EQ(g.dk[l][(n - 1) * acts.kv_dim + ch], 0.0f);
      EXPECT_EQ(g.dv[l][(n - 1) * acts.kv_dim + ch], 0.0f);
    }
  }

  // And the perplexity evaluation of the same single window scores the same total NLL.
  PerplexityOptions opt;
  opt.ctx = static_cast<int>(n);
  opt.max_windows = 1;
  const PerplexityResult r = EvalPerplexity(*m, ids, opt, pool);
  EXPECT_EQ(r.tokens, n - 1);
  EXPECT_NEAR(r.nll * r.tokens, g.loss, 1e-6 * g.loss);
}

TEST(ForwardBackwardKv, ThreadCountDoesNotChangeGradients) {
  ModelConfig c = TinyGqaConfig();
  c.n_layers = 3;
  auto m = MakeSyntheticModel(c, 23, kWeightScale);
  const auto ids = Tokens(33, c.vocab_size, 7);
  ThreadPool one(1), three(3);
  KvGradients a, b;
  ForwardBackwardKv(*m, ids, one, nullptr, &a);
  ForwardBackwardKv(*m, ids, three, nullptr, &b);
  EXPECT_NEAR(a.loss, b.loss, 1e-6 * a.loss);
  for (int l = 0; l < c.n_layers; ++l) {
    double max_abs = 0;
    for (float v : a.dk[l]) max_abs = std::max(max_abs, double(std::fabs(v)));
    for (size_t e = 0; e < a.dk[l].size(); ++e) {
      ASSERT_NEAR(a.dk[l][e], b.dk[l][e], 1e-5 * max_abs);
      ASSERT_NEAR(a.dk_pre[l][e], b.dk_pre[l][e], 1e-5 * max_abs);
    }
  }
}

TEST(ForwardBackwardKv, ActivationsOnlyAndBadInputs) {
  const ModelConfig c = TinyGqaConfig();
  auto m = MakeSyntheticModel(c, 24);
  ThreadPool pool(1);
  KvActivations acts;
  const std::vector<int32_t> ids{1, 2, 3};
  ForwardBackwardKv(*m, ids, pool, &acts, nullptr);
  EXPECT_EQ(acts.k.size(), size_t(c.n_layers));
  EXPECT_EQ(acts.v[1].size(), size_t(3 * c.kv_dim()));
  const std::vector<int32_t> one{1}, bad{1, c.vocab_size};
  EXPECT_THROW(ForwardBackwardKv(*m, one, pool, &acts, nullptr), Error);
  EXPECT_THROW(ForwardBackwardKv(*m, bad, pool, &acts, nullptr), Error);
  const std::vector<int32_t> too_long(static_cast<size_t>(c.max_seq_len + 1), 1);
  EXPECT_THROW(ForwardBackwardKv(*m, too_long, pool, &acts, nullptr), Error);
}

// The streamed pass hands each layer out once, in forward order without gradients and backward
// order with them; the gradient pass recomputes K/V from its checkpoints, which must give the
// forward's floats exactly (calibration mixes both passes' slices in no way, but Fisher and
// uniform codebooks are fitted to the same activations only if this holds).
TEST(ForwardBackwardKvStream, LayerOrderAndRecomputedKvEqualTheForward) {
  for (const ModelConfig& c : {TinyGqaConfig(), TinyArchConfig()}) {
    auto m = MakeSyntheticModel(c, 25, kWeightScale);
    ThreadPool pool(2);
    const auto ids = Tokens(17, c.vocab_size, 8);
    const auto copy = [](ConstMat x) {
      return std::vector<float>(x.data, x.data + x.rows * x.cols);
    };
    std::vector<int> order;
    std::vector<std::vector<float>> fwd(3 * c.n_layers);
    EXPECT_EQ(ForwardBackwardKvStream(*m, ids, pool, false,
                                      [&](const KvLayerSlice& s) {
                                        order.push_back(s.layer);
                                        EXPECT_EQ(s.dk.rows, 0);
                                        fwd[3 * s.layer] = copy(s.k_pre);
                                        fwd[3 * s.layer + 1] = copy(s.k);
                                        fwd[3 * s.layer + 2] = copy(s.v);
                                      }),
              0.0);
    EXPECT_EQ(order, (std::vector<int>{0, 1}));
    order.clear();
    KvGradients g;
    ForwardBackwardKv(*m, ids, pool, nullptr, &g);
    const double loss = ForwardBackwardKvStream(*m, ids, pool, true, [&](const KvLayerSlice& s) {
      order.push_back(s.layer);
      const int l = s.layer;
      EXPECT_EQ(copy(s.k_pre), fwd[3 * l]) << "layer " << l;
      EXPECT_EQ(copy(s.k), fwd[3 * l + 1]) << "layer " << l;
      EXPECT_EQ(copy(s.v), fwd[3 * l + 2]) << "layer " << l;
      EXPECT_EQ(copy(s.dk), g.dk[l]);
      EXPECT_EQ(copy(s.dk_pre), g.dk_pre[l]);
      EXPECT_EQ(copy(s.dv), g.dv[l]);
    });
    EXPECT_EQ(order, (std::vector<int>{1, 0}));
    EXPECT_EQ(loss, g.loss);
  }
}

// x W through every stored type, both overwrite and accumulate, with row counts that are not a
// multiple of the 256-row widening block and columns spread over several column tasks. fp32
// reordering over <= 300 terms keeps the error far below 1e-5 of the largest output.
TEST(MatMulTransposed, MatchesReferenceForEveryType) {
  std::mt19937 rng(9);
  std::normal_distribution<float> nd;
  const int64_t rows = 300, cols = 192;
  std::vector<float> wf(static_cast<size_t>(rows * cols));
  for (auto& v : wf) v = nd(rng);
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ4_0}) {
    std::vector<uint8_t> bytes(static_cast<size_t>(DTypeRowBytes(t, cols) * rows));
    for (int64_t r = 0; r < rows; ++r) {
      QuantizeRow(t, wf.data() + r * cols, cols, bytes.data() + r * DTypeRowBytes(t, cols));
    }
    const WeightMatrix w{t, rows, cols, bytes.data(), "w"};
    ThreadPool pool(3);
    for (int64_t n : {1, 5, 40}) {
      std::vector<float> x(static_cast<size_t>(n * rows)), y(static_cast<size_t>(n * cols)),
          ref(y.size());
      for (auto& v : x) v = nd(rng);
      MatMulTransposedRef(ConstMat(x.data(), n, rows), w, Mat(ref.data(), n, cols));
      double max_ref = 0;
      for (float v : ref) max_ref = std::max(max_ref, double(std::fabs(v)));
      MatMulTransposed(ConstMat(x.data(), n, rows), w, Mat(y.data(), n, cols), pool);
      for (size_t i = 0; i < y.size(); ++i) {
        ASSERT_NEAR(y[i], ref[i], 1e-5 * max_ref) << DTypeName(t) << " n=" << n;
      }
      MatMulTransposed(ConstMat(x.data(), n, rows), w, Mat(y.data(), n, cols), pool, true);
      for (size_t i = 0; i < y.size(); ++i) {
        ASSERT_NEAR(y[i], 2 * ref[i], 2e-5 * max_ref) << DTypeName(t) << " n=" << n;
      }
    }
  }
  std::vector<float> x(6), y(6), w(6);
  const WeightMatrix bad{DType::kF32, 3, 2, w.data(), "blk.0.attn_q.weight"};
  ThreadPool pool(1);
  EXPECT_THROW(MatMulTransposed(ConstMat(x.data(), 2, 3), bad, Mat(y.data(), 2, 3), pool), Error);
}

}  // namespace
}  // namespace cqkv
