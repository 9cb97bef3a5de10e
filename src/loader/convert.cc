#include "loader/convert.h"

#include <cstring>
#include <deque>
#include <vector>

#include "gguf/gguf.h"
#include "kernels/dequant.h"
#include "util/error.h"

namespace cqkv {
namespace {

// Holds re-encoded tensor bytes until the writer has streamed them out.
class TensorEncoder {
 public:
  explicit TensorEncoder(DType target) : target_(target) {}

  // Adds a 2-D weight as (rows, cols) -> ne = {cols, rows}, re-encoding when types differ.
  void AddMatrix(GgufWriter& w, const std::string& name, const WeightMatrix& m) {
    DType type = target_;
    // Quantised types need whole blocks per row; fall back to F16 for odd widths, as llama.cpp
    // does.
    if (m.cols % DTypeBlockSize(type) != 0) type = DType::kF16;
    if (m.type == type) {
      w.AddTensor(name, type, {m.cols, m.rows}, m.data);
      return;
    }
    auto& buf = buffers_.emplace_back(static_cast<size_t>(DTypeRowBytes(type, m.cols) * m.rows));
    std::vector<float> row(static_cast<size_t>(m.cols));
    for (int64_t r = 0; r < m.rows; ++r) {
      DequantizeRow(m.type, m.RowPtr(r), m.cols, row.data());
      uint8_t* out = buf.data() + r * DTypeRowBytes(type, m.cols);
      QuantizeRow(type, row.data(), m.cols, out);
    }
    w.AddTensor(name, type, {m.cols, m.rows}, buf.data());
  }

  void AddVector(GgufWriter& w, const std::string& name, const float* v, int64_t n) {
    w.AddTensor(name, DType::kF32, {n}, v);
  }

 private:
  DType target_;
  std::deque<std::vector<uint8_t>> buffers_;  // deque: stable addresses as it grows
};

}  // namespace

void WriteModelAsGguf(const Model& model, const Vocab& vocab, const std::string& out_path,
                      const ConvertOptions& opt) {
  const ModelConfig& c = model.config;
  CQKV_CHECK(static_cast<int>(vocab.tokens.size()) == c.vocab_size,
             "{}: vocabulary has {} tokens but the model has {} embeddings", out_path,
             vocab.tokens.size(), c.vocab_size);
  GgufWriter w;
  w.Set("general.architecture", GgufValue::Str("llama"));
  w.Set("general.name", GgufValue::Str(opt.name));
  w.Set("general.alignment", GgufValue::U32(32));
  w.Set("llama.context_length", GgufValue::U32(c.max_seq_len));
  w.Set("llama.embedding_length", GgufValue::U32(c.dim));
  w.Set("llama.feed_forward_length", GgufValue::U32(c.hidden_dim));
  w.Set("llama.block_count", GgufValue::U32(c.n_layers));
  w.Set("llama.attention.head_count", GgufValue::U32(c.n_heads));
  w.Set("llama.attention.head_count_kv", GgufValue::U32(c.n_kv_heads));
  w.Set("llama.rope.dimension_count", GgufValue::U32(c.head_dim()));
  w.Set("llama.rope.freq_base", GgufValue::F32(c.rope_freq_base));
  w.Set("llama.attention.layer_norm_rms_epsilon", GgufValue::F32(c.rms_eps));
  w.Set("llama.vocab_size", GgufValue::U32(c.vocab_size));

  w.Set("tokenizer.ggml.model", GgufValue::Str(vocab.model));
  w.Set("tokenizer.ggml.tokens", GgufValue::StrArray(vocab.tokens));
  if (!vocab.scores.empty()) w.Set("tokenizer.ggml.scores", GgufValue::F32Array(vocab.scores));
  if (!vocab.types.empty()) {
    std::vector<int32_t> types(vocab.types.size());
    for (size_t i = 0; i < types.size(); ++i) types[i] = static_cast<int32_t>(vocab.types[i]);
    w.Set("tokenizer.ggml.token_type", GgufValue::I32Array(types));
  }
  if (!vocab.merges.empty()) w.Set("tokenizer.ggml.merges", GgufValue::StrArray(vocab.merges));
  if (!vocab.pre.empty()) w.Set("tokenizer.ggml.pre", GgufValue::Str(vocab.pre));
  if (vocab.bos_id >= 0) w.Set("tokenizer.ggml.bos_token_id", GgufValue::U32(vocab.bos_id));
  if (vocab.eos_id >= 0) w.Set("tokenizer.ggml.eos_token_id", GgufValue::U32(vocab.eos_id));
  if (vocab.unk_id >= 0) w.Set("tokenizer.ggml.unknown_token_id", GgufValue::U32(vocab.unk_id));
  w.Set("tokenizer.ggml.add_bos_token", GgufValue::Bool(vocab.add_bos));
  w.Set("tokenizer.ggml.add_space_prefix", GgufValue::Bool(vocab.add_space_prefix));

  const ModelWeights& mw = model.weights;
  TensorEncoder enc(opt.matrix_type);
  enc.AddMatrix(w, "token_embd.weight", mw.tok_embd);
  enc.AddVector(w, "output_norm.weight", mw.output_norm, c.dim);
  // Written separately even when tied, as llama.cpp's llama2.c converter does.
  enc.AddMatrix(w, "output.weight", mw.output);
  for (int l = 0; l < c.n_layers; ++l) {
    const LayerWeights& lw = mw.layers[l];
    const std::string p = "blk." + std::to_string(l) + ".";
    enc.AddVector(w, p + "attn_norm.weight", lw.attn_norm, c.dim);
    enc.AddMatrix(w, p + "attn_q.weight", lw.wq);
    enc.AddMatrix(w, p + "attn_k.weight", lw.wk);
    enc.AddMatrix(w, p + "attn_v.weight", lw.wv);
    enc.AddMatrix(w, p + "attn_output.weight", lw.wo);
    enc.AddVector(w, p + "ffn_norm.weight", lw.ffn_norm, c.dim);
    enc.AddMatrix(w, p + "ffn_gate.weight", lw.w_gate);
    enc.AddMatrix(w, p + "ffn_down.weight", lw.w_down);
    enc.AddMatrix(w, p + "ffn_up.weight", lw.w_up);
  }
  w.Write(out_path);
}

}  // namespace cqkv
