// GGUF `llama` models: hyper-parameters from llama.* metadata and weight views into the mapped
// file. Every tensor's shape is checked against the configuration before any view is made, so
// the forward pass can trust the shapes.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "kernels/dequant.h"
#include "loader/loader.h"
#include "util/error.h"

namespace cqkv {
namespace {

std::string ShapeStr(const std::vector<int64_t>& ne) {
  std::string s = "[";
  for (size_t i = 0; i < ne.size(); ++i) s += (i ? ", " : "") + std::to_string(ne[i]);
  return s + "]";
}

class LlamaLoader {
 public:
  explicit LlamaLoader(std::shared_ptr<const GgufFile> gguf) : g_(std::move(gguf)) {}

  std::unique_ptr<Model> Load() {
    auto model = std::make_unique<Model>();
    model->path = g_->path();
    model->file_format = "gguf";
    ReadConfig(model->config);
    ReadWeights(model->config, model->weights);
    model->storage = g_;
    return model;
  }

 private:
  int ReadDim(const std::string& key, int64_t lo, int64_t hi) const {
    const int64_t v = g_->GetInt(key);
    CQKV_CHECK(v >= lo && v <= hi, "{}: metadata {} = {} is out of range [{}, {}]", g_->path(), key,
               v, lo, hi);
    return static_cast<int>(v);
  }

  void ReadConfig(ModelConfig& c) const {
    const std::string& path = g_->path();
    const std::string arch = g_->GetString("general.architecture");
    CQKV_CHECK(arch == "llama",
               "{}: model architecture '{}' is not supported (general.architecture must be "
               "'llama')",
               path, arch);
    c.arch = arch;
    c.dim = ReadDim("llama.embedding_length", 1, 1 << 20);
    c.hidden_dim = ReadDim("llama.feed_forward_length", 1, 1 << 22);
    c.n_layers = ReadDim("llama.block_count", 1, 4096);
    c.n_heads = ReadDim("llama.attention.head_count", 1, c.dim);
    c.n_kv_heads = g_->Has("llama.attention.head_count_kv")
                       ? ReadDim("llama.attention.head_count_kv", 1, c.n_heads)
                       : c.n_heads;
    c.max_seq_len = ReadDim("llama.context_length", 1, 1 << 30);
    c.rope_freq_base = static_cast<float>(g_->GetFloat("llama.rope.freq_base", 10000.0));
    c.rms_eps = static_cast<float>(g_->GetFloat("llama.attention.layer_norm_rms_epsilon", 1e-5));
    c.rope_type = RopeType::kNorm;  // GGUF `llama` stores Q/K permuted for consecutive pairs
    CQKV_CHECK(c.dim % c.n_heads == 0 && c.head_dim() % 2 == 0,
               "{}: embedding_length {} is not a multiple of head_count {} with an even head size",
               path, c.dim, c.n_heads);
    CQKV_CHECK(c.n_heads % c.n_kv_heads == 0,
               "{}: head_count {} is not a multiple of head_count_kv {}", path, c.n_heads,
               c.n_kv_heads);
    CQKV_CHECK(c.rope_freq_base > 0 && c.rms_eps > 0,
               "{}: llama.rope.freq_base and llama.attention.layer_norm_rms_epsilon must be > 0",
               path);
    // Partial rotary embeddings would need a different forward pass.
    const int64_t rope_dims = g_->GetInt("llama.rope.dimension_count", c.head_dim());
    CQKV_CHECK(rope_dims == c.head_dim(),
               "{}: llama.rope.dimension_count {} differs from the head size {} (partial RoPE is "
               "not supported)",
               path, rope_dims, c.head_dim());

    const GgufTensorInfo& embd = Require("token_embd.weight");
    CQKV_CHECK(embd.ne.size() >= 2 && embd.ne[1] > 0 && embd.ne[1] <= (1 << 30),
               "{}: tensor 'token_embd.weight' has shape {}, expected [{}, vocab]", path,
               ShapeStr(embd.ne), c.dim);
    c.vocab_size = static_cast<int>(embd.ne[1]);
    if (g_->Has("tokenizer.ggml.tokens")) {
      const uint64_t n_tokens = g_->ArrayLength("tokenizer.ggml.tokens");
      CQKV_CHECK(n_tokens <= static_cast<uint64_t>(c.vocab_size),
                 "{}: tokenizer.ggml.tokens has {} entries but token_embd.weight has only {} rows",
                 path, n_tokens, c.vocab_size);
    }
  }

  const GgufTensorInfo& Require(const std::string& name) const {
    const GgufTensorInfo* t = g_->FindTensor(name);
    CQKV_CHECK(t != nullptr, "{}: missing tensor '{}'", g_->path(), name);
    return *t;
  }

  // Trailing dimensions of size 1 are insignificant in GGML shapes.
  void CheckShape(const GgufTensorInfo& t, const std::vector<int64_t>& want) const {
    bool ok = t.ne.size() >= want.size();
    for (size_t i = 0; ok && i < t.ne.size(); ++i) {
      ok = t.ne[i] == (i < want.size() ? want[i] : 1);
    }
    CQKV_CHECK(ok, "{}: tensor '{}' has shape {}, expected {}", g_->path(), t.name, ShapeStr(t.ne),
               ShapeStr(want));
  }

  // ne = [cols, rows].
  WeightMatrix Matrix(const GgufTensorInfo& t, int64_t rows, int64_t cols) const {
    CheckShape(t, {cols, rows});
    WeightMatrix w;
    w.type = t.type;
    w.rows = rows;
    w.cols = cols;
    w.data = g_->TensorData(t);
    w.name = t.name.c_str();  // lives as long as the GgufFile (Model::storage)
    return w;
  }

  WeightMatrix Matrix(const std::string& name, int64_t rows, int64_t cols) const {
    return Matrix(Require(name), rows, cols);
  }

  const float* Norm(const std::string& name, int64_t dim, ModelWeights& w) const {
    const GgufTensorInfo& t = Require(name);
    CheckShape(t, {dim});
    const void* data = g_->TensorData(t);
    // A file with general.alignment < 4 may leave F32 data unaligned for direct float access.
    if (t.type == DType::kF32 && reinterpret_cast<uintptr_t>(data) % alignof(float) == 0) {
      return static_cast<const float*>(data);
    }
    // Inner vectors keep their heap buffers when the outer vector grows, so this stays valid.
    std::vector<float>& v = w.owned_norms.emplace_back(dim);
    DequantizeRow(t.type, data, dim, v.data());
    return v.data();
  }

  void ReadWeights(const ModelConfig& c, ModelWeights& w) const {
    const int64_t D = c.dim, H = c.hidden_dim, V = c.vocab_size;
    const int64_t q_dim = int64_t{c.n_heads} * c.head_dim();
    const int64_t kv_dim = c.kv_dim();
    w.tok_embd = Matrix("token_embd.weight", V, D);
    w.output_norm = Norm("output_norm.weight", D, w);
    const GgufTensorInfo* out = g_->FindTensor("output.weight");
    w.output = out != nullptr ? Matrix(*out, V, D) : w.tok_embd;  // absent: tied embeddings
    w.layers.resize(c.n_layers);
    for (int l = 0; l < c.n_layers; ++l) {
      const std::string p = "blk." + std::to_string(l) + ".";
      LayerWeights& lw = w.layers[l];
      lw.attn_norm = Norm(p + "attn_norm.weight", D, w);
      lw.wq = Matrix(p + "attn_q.weight", q_dim, D);
      lw.wk = Matrix(p + "attn_k.weight", kv_dim, D);
      lw.wv = Matrix(p + "attn_v.weight", kv_dim, D);
      lw.wo = Matrix(p + "attn_output.weight", D, q_dim);
      lw.ffn_norm = Norm(p + "ffn_norm.weight", D, w);
      lw.w_gate = Matrix(p + "ffn_gate.weight", H, D);
      lw.w_down = Matrix(p + "ffn_down.weight", D, H);
      lw.w_up = Matrix(p + "ffn_up.weight", H, D);
    }
  }

  std::shared_ptr<const GgufFile> g_;
};

}  // namespace

std::unique_ptr<Model> LoadGgufModel(const std::string& path) {
  return LlamaLoader(GgufFile::Open(path)).Load();
}

}  // namespace cqkv
