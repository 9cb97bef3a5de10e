#include "loader/hf_config.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "util/error.h"
#include "util/mapped_file.h"

namespace cqkv {
namespace {

using Json = nlohmann::json;

// Typed, range-checked access to the keys of one config.json object. A key set to null counts as
// absent: transformers writes `"head_dim": null` and the like for "use the default".
class ConfigReader {
 public:
  ConfigReader(const std::string& path, const Json& j) : path_(path), j_(j) {}

  bool Has(const char* key) const { return j_.contains(key) && !j_[key].is_null(); }

  int Int(const char* key, int64_t lo, int64_t hi) const {
    CQKV_CHECK(Has(key), "{}: missing key \"{}\"", path_, key);
    const Json& v = j_[key];
    CQKV_CHECK(v.is_number_integer(), "{}: \"{}\" = {} is not an integer", path_, key, v.dump());
    const int64_t x = v.get<int64_t>();
    CQKV_CHECK(x >= lo && x <= hi, "{}: \"{}\" = {} is out of range [{}, {}]", path_, key, x, lo,
               hi);
    return static_cast<int>(x);
  }
  int Int(const char* key, int64_t lo, int64_t hi, int def) const {
    return Has(key) ? Int(key, lo, hi) : def;
  }

  double Positive(const char* key, double def) const {
    if (!Has(key)) return def;
    const Json& v = j_[key];
    CQKV_CHECK(v.is_number() && v.get<double>() > 0, "{}: \"{}\" = {} is not a positive number",
               path_, key, v.dump());
    return v.get<double>();
  }

  bool Bool(const char* key, bool def) const {
    if (!Has(key)) return def;
    CQKV_CHECK(j_[key].is_boolean(), "{}: \"{}\" = {} is not true/false", path_, key,
               j_[key].dump());
    return j_[key].get<bool>();
  }

  std::string String(const char* key, const std::string& def) const {
    if (!Has(key)) return def;
    CQKV_CHECK(j_[key].is_string(), "{}: \"{}\" = {} is not a string", path_, key, j_[key].dump());
    return j_[key].get<std::string>();
  }

 private:
  const std::string& path_;
  const Json& j_;
};

// The transformers classes cqkv runs and what each adds to the LLaMA block. Mistral's layout is
// LLaMA's (llama.cpp converts both to `llama`); Qwen2 always has Q/K/V biases; Qwen3 normalises
// Q and K per head. All four apply rotate_half RoPE to rows as stored.
struct HfArch {
  const char* name;       // config.json "architectures"[0]
  const char* gguf_arch;  // ModelConfig::arch, the GGUF architecture `cqkv convert` writes
  bool qkv_bias;
  bool qk_norm;
};
constexpr HfArch kHfArchs[] = {{"LlamaForCausalLM", "llama", false, false},
                               {"MistralForCausalLM", "llama", false, false},
                               {"Qwen2ForCausalLM", "qwen2", true, false},
                               {"Qwen3ForCausalLM", "qwen3", false, true}};

const HfArch& ReadArchitecture(const std::string& path, const Json& j) {
  CQKV_CHECK(j.contains("architectures") && j["architectures"].is_array() &&
                 j["architectures"].size() == 1 && j["architectures"][0].is_string(),
             "{}: \"architectures\" must be a list of one name (e.g. [\"LlamaForCausalLM\"])",
             path);
  const std::string name = j["architectures"][0].get<std::string>();
  for (const HfArch& a : kHfArchs) {
    if (name == a.name) return a;
  }
  Fail(
      "{}: architecture '{}' is not supported (supported: LlamaForCausalLM, MistralForCausalLM, "
      "Qwen2ForCausalLM, Qwen3ForCausalLM)",
      path, name);
}

// Llama-3.1's per-pair frequency divisors, as transformers' "llama3" rope_init computes them
// (and llama.cpp's converter stores as rope_freqs.weight): pairs with wavelengths beyond the
// original context are slowed by `factor`, short ones kept, the band between interpolated.
std::vector<float> Llama3FreqFactors(const std::string& path, const ConfigReader& r, int head_dim,
                                     double base, int default_orig_ctx) {
  const double factor = r.Positive("factor", 8.0);
  const double low = r.Positive("low_freq_factor", 1.0);
  const double high = r.Positive("high_freq_factor", 4.0);
  const double orig_ctx = r.Int("original_max_position_embeddings", 1, 1 << 30, default_orig_ctx);
  CQKV_CHECK(high > low, "{}: rope_scaling high_freq_factor {} must exceed low_freq_factor {}",
             path, high, low);
  constexpr double kPi = 3.14159265358979323846;
  std::vector<float> factors(static_cast<size_t>(head_dim / 2));
  for (int i = 0; i < head_dim / 2; ++i) {
    const double wavelen = 2 * kPi * std::pow(base, 2.0 * i / head_dim);
    double f = 1.0;
    if (wavelen > orig_ctx / low) {
      f = factor;
    } else if (wavelen >= orig_ctx / high) {
      const double smooth = (orig_ctx / wavelen - low) / (high - low);
      f = 1.0 / ((1 - smooth) / factor + smooth);
    }
    factors[static_cast<size_t>(i)] = static_cast<float>(f);
  }
  return factors;
}

// RoPE scaling changes the rotation angles: "linear" (position interpolation) and "llama3"
// (per-pair divisors) map onto RopeParams; any other type is refused rather than silently
// computing a different model. transformers >= 5 names the object "rope_parameters" and may
// keep rope_theta in it; like llama.cpp, that object wins over "rope_scaling".
void ReadRope(const std::string& path, const Json& j, ModelConfig& c) {
  const ConfigReader top(path, j);
  c.rope.freq_base = static_cast<float>(top.Positive("rope_theta", 10000.0));
  const char* key = top.Has("rope_parameters") ? "rope_parameters" : "rope_scaling";
  if (!top.Has(key)) return;
  const Json& obj = j[key];
  CQKV_CHECK(obj.is_object(), "{}: \"{}\" = {} is not an object", path, key, obj.dump());
  const ConfigReader r(path, obj);
  if (r.Has("rope_theta")) c.rope.freq_base = static_cast<float>(r.Positive("rope_theta", 1.0));
  const std::string type = r.String("rope_type", r.String("type", "default"));
  if (type == "default") return;
  if (type == "linear") {
    c.rope.freq_scale = static_cast<float>(1.0 / r.Positive("factor", 1.0));
  } else if (type == "llama3") {
    c.rope.freq_factors =
        Llama3FreqFactors(path, r, c.head_dim(), c.rope.freq_base,
                          top.Int("original_max_position_embeddings", 1, 1 << 30, 8192));
  } else {
    Fail("{}: {} type '{}' is not supported (supported: default, linear, llama3)", path, key, type);
  }
}

}  // namespace

HfConfig ReadHfConfig(const std::string& path) {
  Json j;
  try {
    j = Json::parse(ReadFile(path));
  } catch (const Json::exception& e) {
    Fail("{}: not valid JSON: {}", path, e.what());
  }
  CQKV_CHECK(j.is_object(), "{}: not a JSON object", path);
  const ConfigReader r(path, j);
  HfConfig h;
  const HfArch& arch = ReadArchitecture(path, j);
  h.architecture = arch.name;
  ModelConfig& c = h.model;
  c.arch = arch.gguf_arch;
  c.attn_bias = arch.qkv_bias;
  c.qk_norm = arch.qk_norm;
  c.dim = r.Int("hidden_size", 1, 1 << 20);
  c.hidden_dim = r.Int("intermediate_size", 1, 1 << 22);
  c.n_layers = r.Int("num_hidden_layers", 1, 4096);
  c.n_heads = r.Int("num_attention_heads", 1, c.dim);
  c.n_kv_heads = r.Int("num_key_value_heads", 1, c.n_heads, c.n_heads);
  c.vocab_size = r.Int("vocab_size", 1, 1 << 30);
  c.max_seq_len = r.Int("max_position_embeddings", 1, 1 << 30, 2048);
  c.rms_eps = static_cast<float>(r.Positive("rms_norm_eps", 1e-6));  // LlamaConfig's default
  // head_dim may differ from hidden_size / num_attention_heads (Mistral-Nemo); Q and the
  // attention output are then num_attention_heads * head_dim wide.
  if (r.Has("head_dim")) {
    c.head_size = r.Int("head_dim", 2, 1 << 16);
  } else {
    CQKV_CHECK(c.dim % c.n_heads == 0,
               "{}: hidden_size {} is not a multiple of num_attention_heads {} (and no head_dim)",
               path, c.dim, c.n_heads);
  }
  CQKV_CHECK(c.head_dim() % 2 == 0, "{}: head size {} is odd (RoPE rotates pairs)", path,
             c.head_dim());
  CQKV_CHECK(c.n_heads % c.n_kv_heads == 0,
             "{}: num_attention_heads {} is not a multiple of num_key_value_heads {}", path,
             c.n_heads, c.n_kv_heads);
  ReadRope(path, j, c);
  CheckRopeParams(c.rope, c.head_dim(), path.c_str());
  // Hugging Face computes rotate_half on Q/K rows as stored, i.e. pairs (i, i + head_dim/2):
  // NEOX. Running the rows unpermuted with NEOX RoPE is the same model as llama.cpp's permuted
  // rows with NORM RoPE (the permutation only relabels channels inside each head, and q.k is a
  // sum over channels), so loading needs no copy of Q/K. See hf_model.cc.
  c.rope.type = RopeType::kNeox;
  h.tie_word_embeddings = r.Bool("tie_word_embeddings", false);
  const std::string act = r.String("hidden_act", "silu");
  CQKV_CHECK(act == "silu", "{}: hidden_act '{}' is not supported (only silu)", path, act);
  // attention_bias also puts a bias on o_proj, which the forward pass does not add (Qwen2's
  // Q/K/V biases are built in, not configured).
  CQKV_CHECK(!r.Bool("attention_bias", false) && !r.Bool("mlp_bias", false),
             "{}: attention_bias / mlp_bias are not supported for {}", path, h.architecture);
  if (arch.qkv_bias || arch.qk_norm) {
    // Qwen keeps sliding_window in its config but uses it only with use_sliding_window.
    CQKV_CHECK(!r.Bool("use_sliding_window", false),
               "{}: use_sliding_window is not supported (attention is over the whole context)",
               path);
  } else if (r.Has("sliding_window")) {
    // Mistral v0.1 attends over a sliding window; full attention is the same computation as long
    // as the context stays within it, so the usable context is capped there.
    c.max_seq_len = std::min(c.max_seq_len, r.Int("sliding_window", 1, 1 << 30));
  }
  return h;
}

}  // namespace cqkv
