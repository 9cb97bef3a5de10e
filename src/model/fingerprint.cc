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
  f.AddValue(c.rope.freq_base);
  f.AddValue(static_cast<int>(c.rope.type));
  // Parameters added later enter only when they differ from the old implicit values, so
  // fingerprints (and the codebooks that record them) of plain LLaMA models stay as they were.
  if (c.head_dim() != c.dim / c.n_heads) f.AddValue(c.head_dim());
  if (c.rope.freq_scale != 1.0f) f.AddValue(c.rope.freq_scale);
  for (float ff : c.rope.freq_factors) f.AddValue(ff);
  if (c.attn_bias || c.qk_norm) f.AddValue(int{c.attn_bias} + 2 * int{c.qk_norm});
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
