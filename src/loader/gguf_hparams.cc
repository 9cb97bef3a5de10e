#include "loader/gguf_hparams.h"

#include <array>
#include <cmath>
#include <string>

#include "util/error.h"

namespace cqkv {
namespace {

// llama.cpp: `llama` may carry rope_freqs; qwen3 has per-head Q/K norms. Both Qwen layouts
// rotate NEOX pairs (their converters do not permute Q/K rows as the `llama` one does).
constexpr std::array<GgufArch, 3> kArchs = {{
    {"llama", RopeType::kNorm, false, true},
    {"qwen2", RopeType::kNeox, false, false},
    {"qwen3", RopeType::kNeox, true, false},
}};

class Reader {
 public:
  Reader(const GgufFile& g, std::string_view arch) : g_(g), prefix_(std::string(arch) + ".") {}

  int Int(const std::string& key, int64_t lo, int64_t hi) const {
    return Checked(key, g_.GetInt(prefix_ + key), lo, hi);
  }
  int Int(const std::string& key, int64_t def, int64_t lo, int64_t hi) const {
    return Checked(key, g_.GetInt(prefix_ + key, def), lo, hi);
  }
  // A finite value in [lo, hi]: NaN and infinities are refused, naming the key.
  double Float(const std::string& key, double def, double lo, double hi) const {
    const double v = g_.GetFloat(prefix_ + key, def);
    CQKV_CHECK(std::isfinite(v) && v >= lo && v <= hi,
               "{}: metadata {}{} = {} is out of range [{}, {}]", g_.path(), prefix_, key, v, lo,
               hi);
    return v;
  }
  std::string String(const std::string& key, const std::string& def) const {
    return g_.GetString(prefix_ + key, def);
  }
  bool Has(const std::string& key) const { return g_.Has(prefix_ + key); }
  const std::string& prefix() const { return prefix_; }

 private:
  int Checked(const std::string& key, int64_t v, int64_t lo, int64_t hi) const {
    CQKV_CHECK(v >= lo && v <= hi, "{}: metadata {}{} = {} is out of range [{}, {}]", g_.path(),
               prefix_, key, v, lo, hi);
    return static_cast<int>(v);
  }

  const GgufFile& g_;
  std::string prefix_;
};

// Linear scaling only: llama.cpp's default type is "linear" and "none" means no scaling;
// YaRN and LongRoPE change the angles per pair and the attention scale, which cqkv lacks.
float ReadFreqScale(const GgufFile& g, const Reader& r) {
  const std::string type = r.String("rope.scaling.type", "linear");
  CQKV_CHECK(type == "linear" || type == "none",
             "{}: {}rope.scaling.type '{}' is not supported (supported: none, linear)", g.path(),
             r.prefix(), type);
  // The attention-factor key belongs to YaRN-style scalings; any other value changes logits.
  const double attn_factor = r.Float("rope.scaling.attn_factor", 1.0, 0.0, 1e6);
  CQKV_CHECK(attn_factor == 1.0, "{}: {}rope.scaling.attn_factor = {} is not supported (only 1)",
             g.path(), r.prefix(), attn_factor);
  const std::string key =
      r.Has("rope.scaling.factor") ? "rope.scaling.factor" : "rope.scale_linear";
  const double factor = r.Float(key, 0.0, 0.0, 1e6);
  // llama.cpp reads a factor of 0 (or an absent one) as no scaling.
  if (type == "none" || factor == 0.0) return 1.0f;
  return static_cast<float>(1.0 / factor);
}

}  // namespace

const GgufArch& FindGgufArch(const GgufFile& g) {
  const std::string arch = g.GetString("general.architecture");
  for (const GgufArch& a : kArchs) {
    if (a.name == arch) return a;
  }
  Fail(
      "{}: model architecture '{}' is not supported (general.architecture must be one of "
      "llama, qwen2, qwen3)",
      g.path(), arch);
}

void ReadGgufConfig(const GgufFile& g, const GgufArch& arch, ModelConfig& c) {
  const std::string& path = g.path();
  const Reader r(g, arch.name);
  c.arch = std::string(arch.name);
  c.dim = r.Int("embedding_length", 1, 1 << 20);
  c.hidden_dim = r.Int("feed_forward_length", 1, 1 << 22);
  c.n_layers = r.Int("block_count", 1, 4096);
  c.n_heads = r.Int("attention.head_count", 1, 1 << 16);
  c.n_kv_heads = r.Int("attention.head_count_kv", c.n_heads, 1, c.n_heads);
  CQKV_CHECK(c.n_heads % c.n_kv_heads == 0,
             "{}: {}attention.head_count {} is not a multiple of head_count_kv {}", path,
             r.prefix(), c.n_heads, c.n_kv_heads);
  // key_length is optional and defaults to dim / heads, as in llama.cpp; qwen3 sets it apart.
  const bool explicit_head = r.Has("attention.key_length");
  if (!explicit_head) {
    CQKV_CHECK(c.dim % c.n_heads == 0,
               "{}: {}embedding_length {} is not a multiple of attention.head_count {} (and no "
               "attention.key_length says the head size)",
               path, r.prefix(), c.dim, c.n_heads);
  }
  c.head_size = r.Int("attention.key_length", c.dim / c.n_heads, 2, 1 << 14);
  CQKV_CHECK(c.head_size % 2 == 0, "{}: head size {} ({}attention.key_length) must be even", path,
             c.head_size, r.prefix());
  const int value_length = r.Int("attention.value_length", c.head_size, 1, 1 << 14);
  CQKV_CHECK(value_length == c.head_size,
             "{}: {}attention.value_length {} differs from key_length {} (not supported)", path,
             r.prefix(), value_length, c.head_size);
  // Partial rotary embeddings would need a different forward pass.
  const int rope_dims = r.Int("rope.dimension_count", c.head_size, 0, 1 << 14);
  CQKV_CHECK(rope_dims == c.head_size,
             "{}: {}rope.dimension_count {} differs from the head size {} (partial RoPE is not "
             "supported)",
             path, r.prefix(), rope_dims, c.head_size);
  c.max_seq_len = r.Int("context_length", 1, 1 << 30);
  // An epsilon of +inf zeroes every activation and NaN poisons them; 1 is far above any real
  // model's (1e-6..1e-5) yet keeps the norm meaningful.
  c.rms_eps = static_cast<float>(r.Float("attention.layer_norm_rms_epsilon", 1e-5, 1e-12, 1.0));
  CQKV_CHECK(c.rms_eps > 0, "{}: {}attention.layer_norm_rms_epsilon is 0 in float", path,
             r.prefix());
  c.rope.type = arch.rope_type;
  c.rope.freq_base = static_cast<float>(r.Float("rope.freq_base", 10000.0, 1.0, 1e12));
  c.rope.freq_scale = ReadFreqScale(g, r);
  c.rope.freq_factors.clear();
}

}  // namespace cqkv
