// GGUF models of the architectures in loader/gguf_hparams.h: hyper-parameters from metadata
// and weight views into the mapped file. Every tensor's shape is checked against the
// configuration before any view is made, so the forward pass can trust the shapes, and every
// tensor in the file must be consumed: one the architecture does not use (a block beyond
// block_count, a bias cqkv does not apply) is an error naming it, never silently ignored.
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "kernels/dequant.h"
#include "loader/gguf_hparams.h"
#include "loader/loader.h"
#include "util/error.h"

namespace cqkv {
namespace {

std::string ShapeStr(const std::vector<int64_t>& ne) {
  std::string s = "[";
  for (size_t i = 0; i < ne.size(); ++i) s += (i ? ", " : "") + std::to_string(ne[i]);
  return s + "]";
}

class GgufModelLoader {
 public:
  explicit GgufModelLoader(std::shared_ptr<const GgufFile> gguf)
      : g_(std::move(gguf)), used_(g_->tensors().size(), false) {}

  std::unique_ptr<Model> Load() {
    auto model = std::make_unique<Model>();
    model->path = g_->path();
    model->file_format = "gguf";
    const GgufArch& arch = FindGgufArch(*g_);
    ModelConfig& c = model->config;
    ReadGgufConfig(*g_, arch, c);
    ReadVocabSize(c);
    c.qk_norm = arch.qk_norm;
    if (arch.rope_freqs) ReadFreqFactors(c, model->weights);
    CheckRopeParams(c.rope, c.head_dim(), g_->path().c_str());
    ReadWeights(c, model->weights);
    CheckAllUsed(c);
    model->storage = g_;
    return model;
  }

 private:
  void ReadVocabSize(ModelConfig& c) {
    const std::string& path = g_->path();
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

  // Llama-3.1's rope_freqs.weight, (head_dim / 2) divisors of the pairs' frequencies.
  void ReadFreqFactors(ModelConfig& c, ModelWeights& w) {
    const GgufTensorInfo* t = Find("rope_freqs.weight");
    if (t == nullptr) return;
    const int half = c.head_dim() / 2;
    const float* f = Vector(*t, half, w);
    c.rope.freq_factors.assign(f, f + half);
    for (int i = 0; i < half; ++i) {
      CQKV_CHECK(std::isfinite(f[i]) && f[i] > 0,
                 "{}: tensor 'rope_freqs.weight' element {} is {}, must be finite and > 0",
                 g_->path(), i, f[i]);
    }
  }

  // Looks a tensor up and marks it consumed.
  const GgufTensorInfo* Find(const std::string& name) {
    const GgufTensorInfo* t = g_->FindTensor(name);
    if (t != nullptr) used_[static_cast<size_t>(t - g_->tensors().data())] = true;
    return t;
  }

  const GgufTensorInfo& Require(const std::string& name) {
    const GgufTensorInfo* t = Find(name);
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

  WeightMatrix Matrix(const std::string& name, int64_t rows, int64_t cols) {
    return Matrix(Require(name), rows, cols);
  }

  // A 1-D tensor of n values (norm weights, biases) as float.
  const float* Vector(const GgufTensorInfo& t, int64_t n, ModelWeights& w) const {
    CheckShape(t, {n});
    const void* data = g_->TensorData(t);
    // A file with general.alignment < 4 may leave F32 data unaligned for direct float access.
    if (t.type == DType::kF32 && reinterpret_cast<uintptr_t>(data) % alignof(float) == 0) {
      return static_cast<const float*>(data);
    }
    CQKV_CHECK(n % DTypeBlockSize(t.type) == 0,
               "{}: tensor '{}' of {} values cannot be stored as {} blocks", g_->path(), t.name, n,
               DTypeName(t.type));
    // Inner vectors keep their heap buffers when the outer vector grows, so this stays valid.
    std::vector<float>& v = w.owned_norms.emplace_back(n);
    DequantizeRow(t.type, data, n, v.data());
    return v.data();
  }

  const float* Vector(const std::string& name, int64_t n, ModelWeights& w) {
    return Vector(Require(name), n, w);
  }

  const float* OptionalVector(const std::string& name, int64_t n, ModelWeights& w) {
    const GgufTensorInfo* t = Find(name);
    return t != nullptr ? Vector(*t, n, w) : nullptr;
  }

  void ReadWeights(ModelConfig& c, ModelWeights& w) {
    const int64_t D = c.dim, H = c.hidden_dim, V = c.vocab_size;
    const int64_t q_dim = c.q_dim(), kv_dim = c.kv_dim(), hd = c.head_dim();
    w.tok_embd = Matrix("token_embd.weight", V, D);
    w.output_norm = Vector("output_norm.weight", D, w);
    const GgufTensorInfo* out = Find("output.weight");
    w.output = out != nullptr ? Matrix(*out, V, D) : w.tok_embd;  // absent: tied embeddings
    w.layers.resize(c.n_layers);
    for (int l = 0; l < c.n_layers; ++l) {
      const std::string p = "blk." + std::to_string(l) + ".";
      LayerWeights& lw = w.layers[l];
      lw.attn_norm = Vector(p + "attn_norm.weight", D, w);
      lw.wq = Matrix(p + "attn_q.weight", q_dim, D);
      lw.wk = Matrix(p + "attn_k.weight", kv_dim, D);
      lw.wv = Matrix(p + "attn_v.weight", kv_dim, D);
      lw.wo = Matrix(p + "attn_output.weight", D, q_dim);
      lw.bq = OptionalVector(p + "attn_q.bias", q_dim, w);
      lw.bk = OptionalVector(p + "attn_k.bias", kv_dim, w);
      lw.bv = OptionalVector(p + "attn_v.bias", kv_dim, w);
      c.attn_bias = c.attn_bias || lw.bq || lw.bk || lw.bv;
      if (c.qk_norm) {
        lw.q_norm = Vector(p + "attn_q_norm.weight", hd, w);
        lw.k_norm = Vector(p + "attn_k_norm.weight", hd, w);
      }
      lw.ffn_norm = Vector(p + "ffn_norm.weight", D, w);
      lw.w_gate = Matrix(p + "ffn_gate.weight", H, D);
      lw.w_down = Matrix(p + "ffn_down.weight", D, H);
      lw.w_up = Matrix(p + "ffn_up.weight", H, D);
    }
  }

  // llama.cpp refuses a file whose tensor count differs from what it loads; cqkv names the
  // first tensor it would otherwise ignore, since ignoring one computes a different model.
  void CheckAllUsed(const ModelConfig& c) const {
    const auto& tensors = g_->tensors();
    for (size_t i = 0; i < tensors.size(); ++i) {
      if (used_[i]) continue;
      const std::string& name = tensors[i].name;
      int block = -1;
      if (name.rfind("blk.", 0) == 0) {
        block = 0;
        for (size_t j = 4; j < name.size() && name[j] >= '0' && name[j] <= '9' && block < 1 << 20;
             ++j) {
          block = block * 10 + (name[j] - '0');
        }
      }
      CQKV_CHECK(block < c.n_layers, "{}: tensor '{}' belongs to block {} but {}.block_count is {}",
                 g_->path(), name, block, c.arch, c.n_layers);
      Fail(
          "{}: tensor '{}' is not used by cqkv's '{}' model, so the file describes a model "
          "cqkv cannot run",
          g_->path(), name, c.arch);
    }
  }

  std::shared_ptr<const GgufFile> g_;
  std::vector<bool> used_;  // per g_->tensors() entry: consumed by this loader
};

}  // namespace

std::unique_ptr<Model> LoadGgufModel(const std::string& path) {
  return GgufModelLoader(GgufFile::Open(path)).Load();
}

}  // namespace cqkv
