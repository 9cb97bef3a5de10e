#include "calibrate/calibrate.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>

#include "calibrate/activation_spill.h"
#include "model/backward.h"
#include "model/fingerprint.h"
#include "quant/additive_codebook.h"
#include "quant/kmeans.h"
#include "quant/rope_comm.h"
#include "util/error.h"

namespace cqkv {
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
                      const CalibrationProgress& progress, CalibrationStats* stats) {
  const ModelConfig& mc = model.config;
  const int c = opt.config.channels;
  CQKV_CHECK(mc.head_dim() % c == 0, "--config {}: {} channels per group do not divide head dim {}",
             opt.config.Name(), c, mc.head_dim());
  CQKV_CHECK(opt.seq_len <= mc.max_seq_len,
             "--tokens: sequence length {} exceeds the model context {}", opt.seq_len,
             mc.max_seq_len);
  const bool rope_comm = opt.key_kind == KeyKind::kRopeComm;
  if (rope_comm) {
    CQKV_CHECK(opt.keys == KeyPosition::kPreRope, "--keys rope-comm: the keys must be pre-RoPE");
    const std::string why =
        RopeCommUnsupported(opt.config, mc.head_dim(), mc.rope.type == RopeType::kNeox);
    CQKV_CHECK(why.empty(), "--keys rope-comm --config {}: {}", opt.config.Name(), why);
  }
  const int64_t need = int64_t{opt.n_seqs} * opt.seq_len;
  CQKV_CHECK(static_cast<int64_t>(tokens.size()) >= need,
             "calibration data has {} tokens, fewer than --tokens {}x{} = {}", tokens.size(),
             opt.n_seqs, opt.seq_len, need);

  // Problem lk = 2 layer + kind (0 keys, 1 values): rows (need, kv_dim) of activations and,
  // for Fisher, (need, n_groups) squared gradients summed over each channel group.
  const int L = mc.n_layers, kv_dim = mc.kv_dim(), n_groups = kv_dim / c;
  ActivationSpill spill(2 * L, opt.spill_dir);
  const bool pre = opt.keys == KeyPosition::kPreRope;
  std::vector<float> w_rows;
  const auto consume = [&](const KvLayerSlice& s) {
    const ConstMat xs[2] = {pre ? s.k_pre : s.k, s.v};
    const ConstMat gs[2] = {pre ? s.dk_pre : s.dk, s.dv};
    for (int kind = 0; kind < 2; ++kind) {
      const ConstMat x = xs[kind], g = gs[kind];
      w_rows.clear();
      if (opt.fisher) {
        for (int64_t t = 0; t < g.rows; ++t) {
          for (int grp = 0; grp < n_groups; ++grp) {
            double ss = 0;
            for (int j = 0; j < c; ++j) {
              const double v = g(t, grp * c + j);
              ss += v * v;
            }
            w_rows.push_back(static_cast<float>(ss));
          }
        }
      }
      spill.Append(2 * s.layer + kind,
                   std::span<const float>(x.data, static_cast<size_t>(x.rows * x.cols)), w_rows);
    }
  };
  for (int s = 0; s < opt.n_seqs; ++s) {
    std::span<const int32_t> win(tokens.data() + int64_t{s} * opt.seq_len,
                                 static_cast<size_t>(opt.seq_len));
    ForwardBackwardKvStream(model, win, pool, opt.fisher, consume);
    if (progress) progress({"windows", s + 1, opt.n_seqs});
  }
  if (stats) stats->spill_bytes = spill.bytes_written();

  CodebookSet set;
  set.config = opt.config;
  set.keys = opt.keys;
  set.fisher = opt.fisher;
  set.key_kind = opt.key_kind;
  set.n_layers = L;
  set.n_kv_heads = mc.n_kv_heads;
  set.head_dim = mc.head_dim();
  set.model_fingerprint = ModelFingerprint(model);
  set.model_name = model.path;
  set.calibration = opt.description;
  const int k = opt.config.n_centroids();
  set.centroids.assign(static_cast<size_t>(L) * 2,
                       std::vector<float>(static_cast<size_t>(n_groups) * k * c));
  set.objective.resize(static_cast<size_t>(L) * 2);
  if (opt.values == ValueKind::kAdditive) InitAdditiveValues(set);

  // One problem in memory at a time; threads take whole groups of it. Seeds are numbered over
  // all (layer, kind, group) fits, as when every problem was in memory at once.
  const int64_t n_tasks = int64_t{L} * 2 * n_groups;
  std::atomic<int64_t> done{0};
  std::vector<float> x, w;
  std::vector<double> sse(static_cast<size_t>(n_groups));
  for (int lk = 0; lk < 2 * L; ++lk) {
    spill.Take(lk, &x, &w);
    CQKV_CHECK(static_cast<int64_t>(x.size()) == need * kv_dim &&
                   static_cast<int64_t>(w.size()) == (opt.fisher ? need * n_groups : 0),
               "calibration spill {}: layer {} {} has {} values, expected {}", spill.path(), lk / 2,
               lk % 2 ? "V" : "K", x.size(), need * kv_dim);
    pool.ParallelFor(n_groups, 1, [&](int64_t g0, int64_t g1, int tid) {
      std::vector<float> sub(static_cast<size_t>(need * c)), wg;
      for (int64_t grp = g0; grp < g1; ++grp) {
        for (int64_t t = 0; t < need; ++t) {
          std::copy_n(x.data() + t * kv_dim + grp * c, c, sub.data() + t * c);
        }
        if (opt.fisher) {
          wg.resize(static_cast<size_t>(need));
          for (int64_t t = 0; t < need; ++t) wg[t] = w[t * n_groups + grp];
        }
        KMeansParams kp;
        kp.k = k;
        kp.max_iter = opt.max_iter;
        kp.n_init = opt.n_init;
        kp.seed = opt.seed + static_cast<uint64_t>(int64_t{lk} * n_groups + grp);
        if (lk % 2 == 1 && opt.values == ValueKind::kAdditive) {
          const AdditiveParams ap{opt.config.bits, opt.max_iter, opt.n_init, 1e-6, kp.seed};
          sse[grp] = FitAdditiveValueGroup(ConstMat(sub.data(), need, c), wg, ap, set, lk / 2,
                                           static_cast<int>(grp));
        } else {
          const ConstMat xg(sub.data(), need, c);
          const KMeansResult r =
              lk % 2 == 0 && rope_comm ? FitRopeCommGroup(xg, wg, kp) : KMeans(xg, wg, kp, nullptr);
          std::copy(r.centroids.begin(), r.centroids.end(),
                    set.centroids[lk].begin() + grp * k * c);
          sse[grp] = r.objective;
        }
        const int64_t d = ++done;
        if (progress && tid == 0) progress({"k-means", d, n_tasks});
      }
    });
    double s = 0;
    for (double e : sse) s += e;
    set.objective[lk] = s / n_groups;  // mean over groups of the per-vector objective
  }
  if (progress) progress({"k-means", n_tasks, n_tasks});
  return set;
}

}  // namespace cqkv
