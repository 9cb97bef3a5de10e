#include "calibrate/calibrate.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>

#include "model/backward.h"
#include "model/fingerprint.h"
#include "quant/additive_codebook.h"
#include "quant/kmeans.h"
#include "util/error.h"

namespace cqkv {
namespace {

// Per (layer, kind): every calibration token's activations and, for Fisher, the squared
// gradients summed over each channel group. Layout (n_tokens, kv_dim) and (n_tokens, n_groups).
struct Collected {
  std::vector<float> x;
  std::vector<float> w;
};

}  // namespace

void ParseTokensSpec(const std::string& text, int* n_seqs, int* seq_len) {
  const auto x = text.find('x');
  try {
    CQKV_CHECK(x != std::string::npos, "");
    size_t used_a = 0, used_b = 0;
    *n_seqs = std::stoi(text.substr(0, x), &used_a);
    *seq_len = std::stoi(text.substr(x + 1), &used_b);
    CQKV_CHECK(used_a == x && used_b == text.size() - x - 1 && *n_seqs > 0 && *seq_len > 1, "");
  } catch (const std::exception&) {
    Fail("--tokens {}: expected SEQSxLEN, e.g. 16x256", text);
  }
}

CodebookSet Calibrate(const Model& model, const std::vector<int32_t>& tokens,
                      const CalibrationOptions& opt, ThreadPool& pool,
                      const CalibrationProgress& progress) {
  const ModelConfig& mc = model.config;
  const int c = opt.config.channels;
  CQKV_CHECK(mc.head_dim() % c == 0, "--config {}: {} channels per group do not divide head dim {}",
             opt.config.Name(), c, mc.head_dim());
  CQKV_CHECK(opt.seq_len <= mc.max_seq_len,
             "--tokens: sequence length {} exceeds the model context {}", opt.seq_len,
             mc.max_seq_len);
  const int64_t need = int64_t{opt.n_seqs} * opt.seq_len;
  CQKV_CHECK(static_cast<int64_t>(tokens.size()) >= need,
             "calibration data has {} tokens, fewer than --tokens {}x{} = {}", tokens.size(),
             opt.n_seqs, opt.seq_len, need);

  const int L = mc.n_layers, kv_dim = mc.kv_dim(), n_groups = kv_dim / c;
  std::vector<Collected> col(static_cast<size_t>(L) * 2);
  for (auto& cl : col) {
    cl.x.reserve(static_cast<size_t>(need * kv_dim));
    if (opt.fisher) cl.w.reserve(static_cast<size_t>(need * n_groups));
  }
  const bool pre = opt.keys == KeyPosition::kPreRope;
  for (int s = 0; s < opt.n_seqs; ++s) {
    std::span<const int32_t> win(tokens.data() + int64_t{s} * opt.seq_len,
                                 static_cast<size_t>(opt.seq_len));
    KvActivations acts;
    KvGradients grads;
    ForwardBackwardKv(model, win, pool, &acts, opt.fisher ? &grads : nullptr);
    for (int l = 0; l < L; ++l) {
      const std::vector<float>* xs[2] = {pre ? &acts.k_pre[l] : &acts.k[l], &acts.v[l]};
      // Gradients exist only for Fisher weighting (indexing the empty vectors is UB otherwise).
      const std::vector<float>* gs[2] = {nullptr, nullptr};
      if (opt.fisher) {
        gs[0] = pre ? &grads.dk_pre[l] : &grads.dk[l];
        gs[1] = &grads.dv[l];
      }
      for (int kind = 0; kind < 2; ++kind) {
        Collected& cl = col[static_cast<size_t>(l) * 2 + kind];
        cl.x.insert(cl.x.end(), xs[kind]->begin(), xs[kind]->end());
        if (!opt.fisher) continue;
        const std::vector<float>& g = *gs[kind];
        for (int64_t t = 0; t < opt.seq_len; ++t) {
          for (int grp = 0; grp < n_groups; ++grp) {
            double ss = 0;
            for (int j = 0; j < c; ++j) {
              const double v = g[static_cast<size_t>(t * kv_dim + grp * c + j)];
              ss += v * v;
            }
            cl.w.push_back(static_cast<float>(ss));
          }
        }
      }
    }
    if (progress) {
      progress(fmt::format("activations{}: window {}/{}", opt.fisher ? " + gradients" : "", s + 1,
                           opt.n_seqs),
               0.3 * (s + 1) / opt.n_seqs);
    }
  }

  CodebookSet set;
  set.config = opt.config;
  set.keys = opt.keys;
  set.fisher = opt.fisher;
  set.n_layers = L;
  set.n_kv_heads = mc.n_kv_heads;
  set.head_dim = mc.head_dim();
  set.model_fingerprint = ModelFingerprint(model);
  set.model_name = model.path;
  set.calibration = opt.description;
  const int k = opt.config.n_centroids();
  set.centroids.assign(static_cast<size_t>(L) * 2,
                       std::vector<float>(static_cast<size_t>(n_groups) * k * c));
  std::vector<double> sse(static_cast<size_t>(L) * 2 * n_groups, 0.0);
  if (opt.values == ValueKind::kAdditive) InitAdditiveValues(set);

  // One k-means per (layer, kind, group); threads take whole problems.
  const int64_t n_tasks = int64_t{L} * 2 * n_groups;
  std::atomic<int64_t> done{0};
  pool.ParallelFor(n_tasks, 1, [&](int64_t t0, int64_t t1, int tid) {
    std::vector<float> sub(static_cast<size_t>(need * c)), w;
    for (int64_t task = t0; task < t1; ++task) {
      const int lk = static_cast<int>(task / n_groups), grp = static_cast<int>(task % n_groups);
      const Collected& cl = col[lk];
      for (int64_t t = 0; t < need; ++t) {
        std::copy_n(cl.x.data() + t * kv_dim + grp * c, c, sub.data() + t * c);
      }
      if (opt.fisher) {
        w.resize(static_cast<size_t>(need));
        for (int64_t t = 0; t < need; ++t) w[t] = cl.w[t * n_groups + grp];
      }
      KMeansParams kp;
      kp.k = k;
      kp.max_iter = opt.max_iter;
      kp.n_init = opt.n_init;
      kp.seed = opt.seed + static_cast<uint64_t>(task);
      if (lk % 2 == 1 && opt.values == ValueKind::kAdditive) {
        const AdditiveParams ap{opt.config.bits, opt.max_iter, opt.n_init, 1e-6, kp.seed};
        sse[task] = FitAdditiveValueGroup(ConstMat(sub.data(), need, c), w, ap, set, lk / 2, grp);
      } else {
        const KMeansResult r = KMeans(ConstMat(sub.data(), need, c), w, kp, nullptr);
        std::copy(r.centroids.begin(), r.centroids.end(),
                  set.centroids[lk].begin() + static_cast<int64_t>(grp) * k * c);
        sse[task] = r.objective;
      }
      const int64_t d = ++done;
      if (progress && tid == 0) {
        progress(fmt::format("k-means: {}/{} groups", d, n_tasks), 0.3 + 0.7 * d / n_tasks);
      }
    }
  });
  set.objective.resize(static_cast<size_t>(L) * 2);
  for (int lk = 0; lk < L * 2; ++lk) {
    double s = 0;
    for (int g = 0; g < n_groups; ++g) s += sse[static_cast<size_t>(lk) * n_groups + g];
    set.objective[lk] = s / n_groups;  // mean over groups of the per-vector objective
  }
  if (progress) progress("done", 1.0);
  return set;
}

}  // namespace cqkv
