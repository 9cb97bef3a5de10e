// Hugging Face LLaMA/Mistral/Qwen2/Qwen3 checkpoint folders: config.json + safetensors weights,
// viewed in place in the mapped shards. Every tensor is shape-checked against config.json before a
// view is made, and every tensor of the checkpoint must be used, so a feature this loader does not
// know (an o_proj bias, say) is refused instead of silently dropped.
//
// Q/K layout: Hugging Face stores q_proj/k_proj rows in the order its rotate_half RoPE expects,
// channel i paired with i + head_dim/2 (NEOX). llama.cpp's converter permutes those rows so GGUF
// `llama` pairs (2i, 2i+1) (NORM). The two are the same model: within a head the permutation only
// renames channels, and attention scores are sums over channels. So the rows are used as stored
// with RopeType::kNeox: no copy, no permutation pass over 7B of weights. (The rotations produce
// the same products in a different channel order, so logits agree with the permuted GGUF up to
// float summation order; the tests bound that.) `cqkv convert` permutes when writing GGUF
// `llama`. Qwen2/Qwen3 need nothing: GGUF `qwen2`/`qwen3` keep HF's rows and NEOX RoPE too.
// One visible consequence: KV formats that group adjacent channels (CQ couples contiguous
// channels) group them in HF order, the order the CQ paper calibrated in; a codebook calibrated
// on the GGUF of the same model is refused by the model fingerprint, which includes the RoPE type.
#include <cstdint>
#include <deque>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "kernels/dequant.h"
#include "loader/hf_checkpoint.h"
#include "loader/hf_config.h"
#include "loader/loader.h"
#include "util/error.h"

namespace cqkv {
namespace {

// What a Model loaded from a folder keeps alive: the mapped shards, and copies of the (rare)
// tensors whose bytes are not aligned to their element size in the file.
struct HfStorage {
  std::shared_ptr<const HfCheckpoint> checkpoint;
  std::deque<std::vector<uint8_t>> realigned;  // deque: stable addresses as it grows
};

std::string ShapeStr(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

class HfLoader {
 public:
  explicit HfLoader(const std::string& dir)
      : dir_(dir),
        config_(ReadHfConfig((std::filesystem::path(dir) / "config.json").string())),
        storage_(std::make_shared<HfStorage>()) {
    storage_->checkpoint = HfCheckpoint::Open(dir);
  }

  std::unique_ptr<Model> Load() {
    auto model = std::make_unique<Model>();
    model->path = dir_;
    model->file_format = "safetensors";
    model->config = config_.model;
    ReadWeights(model->config, model->weights);
    RefuseUnused();
    model->storage = storage_;
    return model;
  }

 private:
  const HfCheckpoint& ckpt() const { return *storage_->checkpoint; }

  const SafetensorsTensor& Require(const std::string& name, const std::vector<int64_t>& shape) {
    const SafetensorsTensor* t = ckpt().Find(name);
    CQKV_CHECK(t != nullptr, "{}: missing tensor '{}' ({})", dir_, name, config_.architecture);
    CQKV_CHECK(t->shape == shape, "{}: tensor '{}' has shape {}, expected {} from config.json",
               ckpt().FileOf(name), name, ShapeStr(t->shape), ShapeStr(shape));
    used_.insert(name);
    return *t;
  }

  DType TypeOf(const SafetensorsTensor& t) const {
    if (t.dtype == "F32") return DType::kF32;
    if (t.dtype == "F16") return DType::kF16;
    if (t.dtype == "BF16") return DType::kBF16;
    Fail("{}: tensor '{}' has dtype {}; supported: F32, F16, BF16", ckpt().FileOf(t.name), t.name,
         t.dtype);
  }

  // The bytes of `t`, copied when the file leaves them unaligned for their element type
  // (safetensors packs tensors back to back, so an odd-sized F16 tensor can misalign the next).
  const void* Data(const SafetensorsTensor& t, DType type) {
    const size_t align = type == DType::kF32 ? alignof(float) : alignof(uint16_t);
    if (reinterpret_cast<uintptr_t>(t.data) % align == 0) return t.data;
    auto& copy = storage_->realigned.emplace_back(t.data, t.data + t.nbytes);
    return copy.data();
  }

  // Stored as [rows, cols], row-major: the WeightMatrix layout as it is.
  WeightMatrix Matrix(const std::string& name, int64_t rows, int64_t cols) {
    const SafetensorsTensor& t = Require(name, {rows, cols});
    WeightMatrix w;
    w.type = TypeOf(t);
    w.rows = rows;
    w.cols = cols;
    w.data = Data(t, w.type);
    w.name = t.name.c_str();  // lives as long as the checkpoint (Model::storage)
    return w;
  }

  const float* Vector(const std::string& name, int64_t dim, ModelWeights& w) {
    const SafetensorsTensor& t = Require(name, {dim});
    const DType type = TypeOf(t);
    const void* data = Data(t, type);
    if (type == DType::kF32) return static_cast<const float*>(data);
    // Inner vectors keep their heap buffers when the outer vector grows, so this stays valid.
    std::vector<float>& v = w.owned_norms.emplace_back(dim);
    DequantizeRow(type, data, dim, v.data());
    return v.data();
  }

  void ReadWeights(const ModelConfig& c, ModelWeights& w) {
    const int64_t D = c.dim, H = c.hidden_dim, V = c.vocab_size;
    const int64_t q_dim = c.q_dim();
    const int64_t kv_dim = c.kv_dim();
    w.tok_embd = Matrix("model.embed_tokens.weight", V, D);
    w.output_norm = Vector("model.norm.weight", D, w);
    if (config_.tie_word_embeddings) {
      // transformers ties lm_head to the embedding even when a copy is stored; so do we.
      if (ckpt().Find("lm_head.weight") != nullptr) Require("lm_head.weight", {V, D});
      w.output = w.tok_embd;
    } else {
      w.output = Matrix("lm_head.weight", V, D);
    }
    w.layers.resize(c.n_layers);
    for (int l = 0; l < c.n_layers; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      LayerWeights& lw = w.layers[l];
      lw.attn_norm = Vector(p + "input_layernorm.weight", D, w);
      lw.wq = Matrix(p + "self_attn.q_proj.weight", q_dim, D);
      lw.wk = Matrix(p + "self_attn.k_proj.weight", kv_dim, D);
      lw.wv = Matrix(p + "self_attn.v_proj.weight", kv_dim, D);
      lw.wo = Matrix(p + "self_attn.o_proj.weight", D, q_dim);
      if (c.attn_bias) {  // Qwen2
        lw.bq = Vector(p + "self_attn.q_proj.bias", q_dim, w);
        lw.bk = Vector(p + "self_attn.k_proj.bias", kv_dim, w);
        lw.bv = Vector(p + "self_attn.v_proj.bias", kv_dim, w);
      }
      if (c.qk_norm) {  // Qwen3: one RMSNorm weight per head channel, shared by the heads
        lw.q_norm = Vector(p + "self_attn.q_norm.weight", c.head_dim(), w);
        lw.k_norm = Vector(p + "self_attn.k_norm.weight", c.head_dim(), w);
      }
      lw.ffn_norm = Vector(p + "post_attention_layernorm.weight", D, w);
      lw.w_gate = Matrix(p + "mlp.gate_proj.weight", H, D);
      lw.w_down = Matrix(p + "mlp.down_proj.weight", D, H);
      lw.w_up = Matrix(p + "mlp.up_proj.weight", H, D);
    }
  }

  // Old checkpoints store each layer's RoPE inverse frequencies; they follow from rope_theta
  // (llama.cpp's converter drops them too). Anything else unused means a feature not computed.
  void RefuseUnused() const {
    const std::string inv_freq = ".self_attn.rotary_emb.inv_freq";
    for (const std::string& name : ckpt().Names()) {
      if (used_.count(name) != 0) continue;
      if (name.size() > inv_freq.size() &&
          name.compare(name.size() - inv_freq.size(), inv_freq.size(), inv_freq) == 0) {
        continue;
      }
      Fail("{}: tensor '{}' is not part of a {} model as config.json describes it (unsupported)",
           ckpt().FileOf(name), name, config_.architecture);
    }
  }

  std::string dir_;
  HfConfig config_;
  std::shared_ptr<HfStorage> storage_;
  std::set<std::string> used_;
};

}  // namespace

std::unique_ptr<Model> LoadHfModel(const std::string& dir) { return HfLoader(dir).Load(); }

}  // namespace cqkv
