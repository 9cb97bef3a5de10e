// The parts of the CQ cache that need no cache object: its spec text, the bytes it costs, the
// check that a codebook set fits a model, and random codebooks for tests and timing.
#include <algorithm>
#include <cassert>
#include <charconv>
#include <random>

#include "kv/cq_cache.h"
#include "util/error.h"

namespace cqkv {

CqSpec ParseCqSpec(const std::string& spec) {
  CQKV_CHECK(spec.rfind("cq:", 0) == 0, "KV format '{}': a CQ spec is cq:PATH[:fs][:rN]", spec);
  CqSpec out;
  out.path = spec.substr(3);
  // Trailing ":r<digits>" (the window) and ":fs" options, each at most once, in either order;
  // anything else after a colon belongs to the path.
  bool window = false;
  for (;;) {
    const size_t colon = out.path.rfind(':');
    if (colon == std::string::npos) break;
    const std::string opt = out.path.substr(colon + 1);
    if (opt == "fs" && !out.fast_scan) {
      out.fast_scan = true;
    } else if (opt.size() > 1 && opt[0] == 'r' && !window) {
      int r = 0;
      const auto res = std::from_chars(opt.data() + 1, opt.data() + opt.size(), r);
      if (res.ec != std::errc() || res.ptr != opt.data() + opt.size()) break;
      out.window = r;
      window = true;
    } else {
      break;
    }
    out.path.resize(colon);
  }
  CQKV_CHECK(!out.path.empty(), "KV format '{}': missing codebook path (cq:PATH[:fs][:rN])", spec);
  return out;
}

CodebookSet RandomCodebooks(const KvShape& shape, const CqConfig& config, uint64_t seed,
                            KeyPosition keys) {
  CodebookSet s;
  s.config = config;
  s.keys = keys;
  s.n_layers = shape.n_layers;
  s.n_kv_heads = shape.n_kv_heads;
  s.head_dim = shape.head_dim;
  s.model_fingerprint = shape.model_fingerprint;
  s.model_name = "random";
  s.calibration = "random N(0,1) centroids";
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd;
  for (int t = 0; t < 2 * shape.n_layers; ++t) {
    s.centroids.emplace_back(static_cast<size_t>(s.n_groups()) * config.n_centroids() *
                             config.channels);
    for (float& v : s.centroids.back()) v = nd(rng);
    s.objective.push_back(0.0);
  }
  return s;
}

void CheckCodebooksFit(const CodebookSet& set, const KvShape& shape, const std::string& source) {
  CQKV_CHECK(set.n_layers == shape.n_layers && set.n_kv_heads == shape.n_kv_heads &&
                 set.head_dim == shape.head_dim,
             "codebook {} does not fit this model: it was learned on {} layers x {} KV heads x "
             "head dim {}, the model has {} layers x {} KV heads x head dim {}",
             source, set.n_layers, set.n_kv_heads, set.head_dim, shape.n_layers, shape.n_kv_heads,
             shape.head_dim);
  CQKV_CHECK(shape.head_dim % set.config.channels == 0,
             "codebook {}: group size c={} does not divide the model's head dim {}", source,
             set.config.channels, shape.head_dim);
  CQKV_CHECK(shape.model_fingerprint == 0 || shape.model_fingerprint == set.model_fingerprint,
             "codebook {} was learned on another model ('{}', fingerprint {:016x}); this "
             "model's fingerprint is {:016x}. Calibrate codebooks for this model.",
             source, set.model_name, set.model_fingerprint, shape.model_fingerprint);
  assert(set.centroids.size() == static_cast<size_t>(2 * set.n_layers));
}

CqBytes CqBytesPerToken(const CqConfig& config, const KvShape& shape, int window) {
  const double layers_kv = 2.0 * shape.n_layers;
  const double n_groups = static_cast<double>(shape.kv_dim()) / config.channels;
  const double max_tokens = std::max(1, shape.max_tokens);
  CqBytes b;
  b.codes = layers_kv * n_groups * config.bits / 8.0;
  b.tables = layers_kv * n_groups * config.n_centroids() * config.channels * 4.0 / max_tokens;
  b.window = std::min(window, shape.max_tokens) * layers_kv * shape.kv_dim() * 2.0 / max_tokens;
  return b;
}
}  // namespace cqkv
