// `cqkv kv-grads`: K/V activations and the gradients of the window's summed NLL with respect to
// them (model/backward.h), as raw float32 for the NumPy reference check and for inspection.
#include <fmt/core.h>

#include <chrono>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/backward.h"
#include "tools/common.h"
#include "util/atomic_file.h"
#include "util/error.h"

namespace cqkv::tools {

void RegisterKvGrads(CLI::App& app) {
  struct Opts {
    ModelOptions m;
    std::string tokens, out;
    int random = 0;
    uint32_t seed = 1;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = app.add_subcommand(
      "kv-grads", "write one window's K/V activations and their loss gradients (raw float32)");
  cmd->footer(
      "Output: for each layer, six (n_tokens x kv_dim) row-major float32 blocks k_pre, k, v, "
      "dk_pre, dk, dv, where d = d(summed next-token NLL)/d(activation). Prints a JSON summary "
      "(loss, shapes, seconds).");
  AddModelOptions(cmd, o->m);
  auto* tok = cmd->add_option("--tokens", o->tokens, "comma-separated token ids of the window");
  auto* rnd = cmd->add_option("--random", o->random, "use N random token ids instead (timing)")
                  ->check(CLI::Range(2, 1 << 20));
  tok->excludes(rnd);
  cmd->add_option("--seed", o->seed, "seed of --random");
  cmd->add_option("-o,--out", o->out, "output file (omit to only time and print the summary)")
      ->check(kNonEmptyPath);
  cmd->callback([o] {
    auto model = LoadModelFrom(o->m);
    std::vector<int32_t> ids;
    if (o->random > 0) {
      std::mt19937 rng(o->seed);
      for (int i = 0; i < o->random; ++i) {
        ids.push_back(static_cast<int32_t>(rng() % model->config.vocab_size));
      }
    } else {
      CQKV_CHECK(!o->tokens.empty(), "kv-grads: give --tokens or --random");
      ids = ParseTokenIds(o->tokens, "--tokens");
      CheckTokenIds(ids, *model, "--tokens");
    }
    CQKV_CHECK(static_cast<int64_t>(ids.size()) <= model->config.max_seq_len,
               "--tokens: {} tokens exceed the model context {}", ids.size(),
               model->config.max_seq_len);
    CQKV_CHECK(ids.size() >= 2, "kv-grads: give at least 2 token ids with --tokens or --random");
    ThreadPool pool(o->m.threads);
    KvActivations acts;
    KvGradients grads;
    const auto t0 = std::chrono::steady_clock::now();
    ForwardBackwardKv(*model, ids, pool, &acts, &grads);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!o->out.empty()) {
      std::string bytes;
      for (int l = 0; l < acts.n_layers; ++l) {
        for (const auto* block : {&acts.k_pre[l], &acts.k[l], &acts.v[l], &grads.dk_pre[l],
                                  &grads.dk[l], &grads.dv[l]}) {
          bytes.append(reinterpret_cast<const char*>(block->data()), block->size() * sizeof(float));
        }
      }
      WriteFileAtomic(o->out, bytes);
    }
    nlohmann::json j = {
        {"n_tokens", acts.n_tokens},
        {"n_layers", acts.n_layers},
        {"kv_dim", acts.kv_dim},
        {"loss", grads.loss},
        {"n_predicted", grads.n_predicted},
        {"threads", pool.size()},
        {"seconds", seconds},
        {"layout", "per layer: k_pre, k, v, dk_pre, dk, dv; each (n_tokens, kv_dim)"}};
    fmt::print("{}\n", j.dump());
  });
}

}  // namespace cqkv::tools
