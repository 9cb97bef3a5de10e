#include "calibrate/calibrate.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <memory>

#include "calibrate/activation_spill.h"
#include "model/backward.h"
#include "model/fingerprint.h"
#include "quant/additive_codebook.h"
#include "quant/kmeans.h"
#include "quant/residual_codebook.h"
#include "quant/rope_comm.h"
#include "util/error.h"

namespace cqkv {
namespace {

// A gradient pass's layer checkpoints in files beside the activation spill, so that a window's
// backward sweep holds one layer's (4 n 2 dim bytes) instead of every layer's.
class SpilledCheckpoints final : public CheckpointStore {
 public:
  SpilledCheckpoints(int n_layers, const std::string& dir) : spill_(2 * n_layers, dir) {}
  void Put(int index, std::span<const float> x) override { spill_.Append(index, x, {}); }
  std::vector<float> Take(int index) override {
    std::vector<float> x, unused;
    spill_.Take(index, &x, &unused);
    return x;
  }
  int64_t bytes_written() const { return spill_.bytes_written(); }

 private:
  ActivationSpill spill_;
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
                      const CalibrationProgress& progress, CalibrationStats* stats) {
  const ModelConfig& mc = model.config;
  const int c = opt.config.channels;
  CQKV_CHECK(mc.head_dim() % c == 0, "--config {}: {} channels per group do not divide head dim {}",
             opt.config.Name(), c, mc.head_dim());
  CQKV_CHECK(opt.seq_len <= mc.max_seq_len,
             "--tokens: sequence length {} exceeds the model context {}", opt.seq_len,
             mc.max_seq_len);
  // Checked before the model runs, not minutes later when the values are fitted.
  CQKV_CHECK(
      opt.values != ValueKind::kResidual || (opt.config.bits % 2 == 0 && opt.config.bits <= 12),
      "--values residual --config {}: needs an even code size of at most 12 bits",
      opt.config.Name());
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

  // Problem lk = 2 layer + kind (0 keys, 1 values). Each window of n = seq_len tokens appends
  // its rows group by group: for every channel group, (n, c) activations, and for Fisher (n)
  // squared gradients summed over the group. A group's rows are then n_seqs runs of the spill,
  // so the fit reads one group at a time instead of holding the problem's (need, kv_dim).
  const int L = mc.n_layers, kv_dim = mc.kv_dim(), n_groups = kv_dim / c;
  const int64_t n = opt.seq_len;
  ActivationSpill spill(2 * L, opt.spill_dir);
  const bool pre = opt.keys == KeyPosition::kPreRope;
  // Groups are regrouped and appended a batch at a time (about 1 MiB) rather than a whole
  // (n, kv_dim) copy per layer.
  const int64_t batch = std::clamp<int64_t>((int64_t{1} << 18) / (n * c), 1, n_groups);
  std::vector<float> x_groups, w_groups;
  const auto consume = [&](const KvLayerSlice& s) {
    const ConstMat xs[2] = {pre ? s.k_pre : s.k, s.v};
    const ConstMat gs[2] = {pre ? s.dk_pre : s.dk, s.dv};
    for (int kind = 0; kind < 2; ++kind) {
      const ConstMat x = xs[kind], g = gs[kind];
      for (int64_t g0 = 0; g0 < n_groups; g0 += batch) {
        const int64_t m = std::min<int64_t>(batch, n_groups - g0);
        x_groups.resize(static_cast<size_t>(m * n * c));
        w_groups.resize(opt.fisher ? static_cast<size_t>(m * n) : 0);
        for (int64_t i = 0; i < m; ++i) {
          const int64_t col = (g0 + i) * c;
          float* xg = x_groups.data() + i * n * c;
          for (int64_t t = 0; t < n; ++t) std::copy_n(x.Row(t) + col, c, xg + t * c);
          if (!opt.fisher) continue;
          for (int64_t t = 0; t < n; ++t) {
            double ss = 0;
            for (int j = 0; j < c; ++j) {
              const double v = g(t, col + j);
              ss += v * v;
            }
            w_groups[i * n + t] = static_cast<float>(ss);
          }
        }
        spill.Append(2 * s.layer + kind, x_groups, w_groups);
      }
    }
  };
  std::unique_ptr<SpilledCheckpoints> checkpoints;
  if (opt.fisher && !opt.spill_dir.empty()) {
    checkpoints = std::make_unique<SpilledCheckpoints>(L, opt.spill_dir);
  }
  for (int s = 0; s < opt.n_seqs; ++s) {
    std::span<const int32_t> win(tokens.data() + int64_t{s} * opt.seq_len,
                                 static_cast<size_t>(opt.seq_len));
    ForwardBackwardKvStream(model, win, pool, opt.fisher, consume, checkpoints.get());
    if (progress) progress({"windows", s + 1, opt.n_seqs});
  }
  if (stats) {
    stats->spill_bytes = spill.bytes_written();
    stats->checkpoint_bytes = checkpoints ? checkpoints->bytes_written() : 0;
  }
  checkpoints.reset();  // removes its (by now empty) directory

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
  if (opt.values == ValueKind::kResidual) InitResidualValues(set);

  // One group of one problem in memory per thread. Seeds are numbered over
  // all (layer, kind, group) fits, as when every problem was in memory at once.
  const int64_t n_tasks = int64_t{L} * 2 * n_groups;
  std::atomic<int64_t> done{0};
  std::vector<double> sse(static_cast<size_t>(n_groups));
  for (int lk = 0; lk < 2 * L; ++lk) {
    CQKV_CHECK(spill.Size(lk, false) == need * kv_dim &&
                   spill.Size(lk, true) == (opt.fisher ? need * n_groups : 0),
               "calibration spill {}: layer {} {} has {} values, expected {}", spill.path(), lk / 2,
               lk % 2 ? "V" : "K", spill.Size(lk, false), need * kv_dim);
    pool.ParallelFor(n_groups, 1, [&](int64_t g0, int64_t g1, int tid) {
      std::vector<float> sub(static_cast<size_t>(need * c)), wg(opt.fisher ? need : 0);
      for (int64_t grp = g0; grp < g1; ++grp) {
        for (int s = 0; s < opt.n_seqs; ++s) {
          spill.Read(lk, false, (s * n_groups + grp) * n * c,
                     std::span<float>(sub).subspan(s * n * c, n * c));
          if (opt.fisher) {
            spill.Read(lk, true, (s * n_groups + grp) * n, std::span<float>(wg).subspan(s * n, n));
          }
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
        } else if (lk % 2 == 1 && opt.values == ValueKind::kResidual) {
          const ResidualParams rp{opt.config.bits, opt.max_iter, opt.n_init, 1e-6, kp.seed};
          sse[grp] = FitResidualValueGroup(ConstMat(sub.data(), need, c), wg, rp, set, lk / 2,
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
    spill.Release(lk);
    double s = 0;
    for (double e : sse) s += e;
    set.objective[lk] = s / n_groups;  // mean over groups of the per-vector objective
  }
  if (progress) progress({"k-means", n_tasks, n_tasks});
  return set;
}

}  // namespace cqkv
