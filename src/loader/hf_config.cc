#include "loader/hf_config.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>

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

std::string ReadArchitecture(const std::string& path, const Json& j) {
  CQKV_CHECK(j.contains("architectures") && j["architectures"].is_array() &&
                 j["architectures"].size() == 1 && j["architectures"][0].is_string(),
             "{}: \"architectures\" must be a list of one name (e.g. [\"LlamaForCausalLM\"])",
             path);
  const std::string arch = j["architectures"][0].get<std::string>();
  // Mistral's HF checkpoints are LLaMA's layout with GQA (llama.cpp converts both to `llama`).
  CQKV_CHECK(arch == "LlamaForCausalLM" || arch == "MistralForCausalLM",
             "{}: architecture '{}' is not supported (supported: LlamaForCausalLM, "
             "MistralForCausalLM)",
             path, arch);
  return arch;
}

// RoPE scaling changes the rotation angles; the forward pass implements only plain RoPE, so any
// scaling other than "default" is refused rather than silently computing a different model.
// transformers >= 5 nests rope_theta and the type in "rope_parameters".
void ReadRope(const std::string& path, const Json& j, ModelConfig& c) {
  const ConfigReader top(path, j);
  c.rope_freq_base = static_cast<float>(top.Positive("rope_theta", 10000.0));
  for (const char* key : {"rope_scaling", "rope_parameters"}) {
    if (!top.Has(key)) continue;
    const Json& r = j[key];
    CQKV_CHECK(r.is_object(), "{}: \"{}\" = {} is not an object", path, key, r.dump());
    const ConfigReader sub(path, r);
    const std::string type = sub.String("rope_type", sub.String("type", "default"));
    CQKV_CHECK(type == "default",
               "{}: {} type '{}' is not supported (only unscaled RoPE, \"default\")", path, key,
               type);
    if (sub.Has("rope_theta")) {
      c.rope_freq_base = static_cast<float>(sub.Positive("rope_theta", 10000.0));
    }
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
  h.architecture = ReadArchitecture(path, j);
  ModelConfig& c = h.model;
  c.arch = "llama";
  c.dim = r.Int("hidden_size", 1, 1 << 20);
  c.hidden_dim = r.Int("intermediate_size", 1, 1 << 22);
  c.n_layers = r.Int("num_hidden_layers", 1, 4096);
  c.n_heads = r.Int("num_attention_heads", 1, c.dim);
  c.n_kv_heads = r.Int("num_key_value_heads", 1, c.n_heads, c.n_heads);
  c.vocab_size = r.Int("vocab_size", 1, 1 << 30);
  c.max_seq_len = r.Int("max_position_embeddings", 1, 1 << 30, 2048);
  c.rms_eps = static_cast<float>(r.Positive("rms_norm_eps", 1e-6));  // LlamaConfig's default
  ReadRope(path, j, c);
  // Hugging Face computes rotate_half on Q/K rows as stored, i.e. pairs (i, i + head_dim/2):
  // NEOX. Running the rows unpermuted with NEOX RoPE is the same model as llama.cpp's permuted
  // rows with NORM RoPE (the permutation only relabels channels inside each head, and q.k is a
  // sum over channels), so loading needs no copy of Q/K. See hf_model.cc.
  c.rope_type = RopeType::kNeox;
  h.tie_word_embeddings = r.Bool("tie_word_embeddings", false);

  CQKV_CHECK(c.dim % c.n_heads == 0 && c.head_dim() % 2 == 0,
             "{}: hidden_size {} is not a multiple of num_attention_heads {} with an even head "
             "size",
             path, c.dim, c.n_heads);
  CQKV_CHECK(c.n_heads % c.n_kv_heads == 0,
             "{}: num_attention_heads {} is not a multiple of num_key_value_heads {}", path,
             c.n_heads, c.n_kv_heads);
  if (r.Has("head_dim")) {
    const int hd = r.Int("head_dim", 1, 1 << 16);
    CQKV_CHECK(hd == c.head_dim(),
               "{}: head_dim {} differs from hidden_size / num_attention_heads = {} (not "
               "supported)",
               path, hd, c.head_dim());
  }
  const std::string act = r.String("hidden_act", "silu");
  CQKV_CHECK(act == "silu", "{}: hidden_act '{}' is not supported (only silu)", path, act);
  CQKV_CHECK(!r.Bool("attention_bias", false) && !r.Bool("mlp_bias", false),
             "{}: attention_bias / mlp_bias are not supported for {}", path, h.architecture);
  // Mistral v0.1 attends over a sliding window; full attention is the same computation as long as
  // the context stays within it, so the usable context is capped there.
  if (r.Has("sliding_window")) {
    c.max_seq_len = std::min(c.max_seq_len, r.Int("sliding_window", 1, 1 << 30));
  }
  return h;
}

}  // namespace cqkv
