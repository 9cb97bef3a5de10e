#include "model/fingerprint.h"

#include <algorithm>
#include <cstring>

namespace cqkv {
namespace {

// FNV-1a: tiny and stable across platforms; collisions between real models are not a concern
// at 64 bits for an identity check.
struct Fnv1a {
  uint64_t h = 0xcbf29ce484222325ull;
  void Add(const void* data, size_t n) {
    const auto* p = static_cast<const uint8_t*>(data);
    for (size_t i = 0; i < n; ++i) {
      h ^= p[i];
      h *= 0x100000001b3ull;
    }
  }
  template <typename T>
  void AddValue(const T& v) {
    Add(&v, sizeof(v));
  }
};

}  // namespace

uint64_t ModelFingerprint(const Model& model) {
  const ModelConfig& c = model.config;
  Fnv1a f;
  for (int v : {c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.vocab_size}) {
    f.AddValue(v);
  }
  f.AddValue(c.rope_freq_base);
  f.AddValue(static_cast<int>(c.rope_type));
  constexpr size_t kSample = 4096;  // bytes per matrix: enough to tell models apart, cheap on 7B
  for (const LayerWeights& l : model.weights.layers) {
    for (const WeightMatrix* w : {&l.wk, &l.wv}) {
      const size_t bytes = static_cast<size_t>(DTypeRowBytes(w->type, w->cols) * w->rows);
      f.AddValue(static_cast<uint32_t>(w->type));
      f.Add(w->data, std::min(bytes, kSample));
    }
  }
  return f.h;
}

}  // namespace cqkv
