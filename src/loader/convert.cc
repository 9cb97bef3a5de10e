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
  // `src_rows`, when given, says which row of `m` becomes each output row (a permutation).
  void AddMatrix(GgufWriter& w, const std::string& name, const WeightMatrix& m,
                 const std::vector<int64_t>& src_rows = {}) {
    DType type = target_;
    // Quantised types need whole blocks per row; fall back to F16 for odd widths, as llama.cpp
    // does.
    if (m.cols % DTypeBlockSize(type) != 0) type = DType::kF16;
    if (m.type == type && src_rows.empty()) {
      w.AddTensor(name, type, {m.cols, m.rows}, m.data);
      return;
    }
    const int64_t row_bytes = DTypeRowBytes(type, m.cols);
    auto& buf = buffers_.emplace_back(static_cast<size_t>(row_bytes * m.rows));
    std::vector<float> row(static_cast<size_t>(m.cols));
    for (int64_t r = 0; r < m.rows; ++r) {
      const uint8_t* in = m.RowPtr(src_rows.empty() ? r : src_rows[r]);
      uint8_t* out = buf.data() + r * row_bytes;
      if (m.type == type) {
        std::memcpy(out, in, static_cast<size_t>(row_bytes));
        continue;
      }
      DequantizeRow(m.type, in, m.cols, row.data());
      QuantizeRow(type, row.data(), m.cols, out);
    }
    w.AddTensor(name, type, {m.cols, m.rows}, buf.data());
  }

  // Adds an F32 vector of n values; `src_rows` as for AddMatrix.
  void AddVector(GgufWriter& w, const std::string& name, const float* v, int64_t n,
                 const std::vector<int64_t>& src_rows = {}) {
    if (!src_rows.empty()) {
      auto& buf = buffers_.emplace_back(static_cast<size_t>(n) * sizeof(float));
      auto* out = reinterpret_cast<float*>(buf.data());
      for (int64_t i = 0; i < n; ++i) out[i] = v[src_rows[i]];
      v = out;
    }
    w.AddTensor(name, DType::kF32, {n}, v);
  }

 private:
  DType target_;
  std::deque<std::vector<uint8_t>> buffers_;  // deque: stable addresses as it grows
};

// GGUF `llama` rotates channel pairs (2i, 2i+1) of each head; a model loaded with NEOX RoPE
// (Hugging Face layout) pairs (i, i + head_dim/2). Output row h*hd + 2i + j takes input row
// h*hd + j*hd/2 + i: the permutation llama.cpp's converter applies (LlamaModel.permute).
std::vector<int64_t> NeoxToNormRows(int n_heads, int head_dim) {
  std::vector<int64_t> rows(static_cast<size_t>(n_heads) * head_dim);
  const int half = head_dim / 2;
  for (int h = 0; h < n_heads; ++h) {
    for (int i = 0; i < half; ++i) {
      for (int j = 0; j < 2; ++j) {
        rows[static_cast<size_t>(h) * head_dim + 2 * i + j] = int64_t{h} * head_dim + j * half + i;
      }
    }
  }
  return rows;
}

// Hugging Face models often have more embedding rows than tokenizer entries; llama.cpp's
// converter fills the gap with unused "[PAD<id>]" tokens so the GGUF vocabulary matches.
Vocab PadVocab(const Vocab& vocab, int vocab_size) {
  Vocab v = vocab;
  if (static_cast<int>(v.tokens.size()) >= vocab_size) return v;
  if (v.types.empty()) v.types.assign(v.tokens.size(), TokenType::kNormal);
  for (int id = static_cast<int>(v.tokens.size()); id < vocab_size; ++id) {
    v.tokens.push_back("[PAD" + std::to_string(id) + "]");
    v.types.push_back(TokenType::kUnused);
    if (!v.scores.empty()) v.scores.push_back(-1000.0f);
  }
  return v;
}

}  // namespace

void WriteModelAsGguf(const Model& model, const Vocab& model_vocab, const std::string& out_path,
                      const ConvertOptions& opt) {
  const ModelConfig& c = model.config;
  CQKV_CHECK(static_cast<int>(model_vocab.tokens.size()) <= c.vocab_size,
             "{}: vocabulary has {} tokens but the model has only {} embeddings", out_path,
             model_vocab.tokens.size(), c.vocab_size);
  const Vocab vocab = PadVocab(model_vocab, c.vocab_size);
  // GGUF `llama` rotates (2i, 2i+1); qwen2/qwen3 rotate (i, i + head_dim/2) as HF stores them.
  const std::string& arch = c.arch;
  CQKV_CHECK(arch == "llama" || arch == "qwen2" || arch == "qwen3",
             "{}: cannot write architecture '{}' as GGUF", out_path, arch);
  const bool permute = arch == "llama" && c.rope.type == RopeType::kNeox;
  CQKV_CHECK(arch == "llama" || c.rope.type == RopeType::kNeox, "{}: GGUF {} needs NEOX RoPE rows",
             out_path, arch);
  CQKV_CHECK(!(permute && c.qk_norm), "{}: Q/K norms cannot be written to GGUF llama", out_path);
  CQKV_CHECK(arch == "llama" || c.rope.freq_factors.empty(), "{}: GGUF {} has no rope_freqs.weight",
             out_path, arch);
  GgufWriter w;
  const auto key = [&arch](const char* k) { return arch + "." + k; };
  w.Set("general.architecture", GgufValue::Str(arch));
  w.Set("general.name", GgufValue::Str(opt.name));
  w.Set("general.alignment", GgufValue::U32(32));
  w.Set(key("context_length"), GgufValue::U32(c.max_seq_len));
  w.Set(key("embedding_length"), GgufValue::U32(c.dim));
  w.Set(key("feed_forward_length"), GgufValue::U32(c.hidden_dim));
  w.Set(key("block_count"), GgufValue::U32(c.n_layers));
  w.Set(key("attention.head_count"), GgufValue::U32(c.n_heads));
  w.Set(key("attention.head_count_kv"), GgufValue::U32(c.n_kv_heads));
  w.Set(key("rope.dimension_count"), GgufValue::U32(c.head_dim()));
  w.Set(key("rope.freq_base"), GgufValue::F32(c.rope.freq_base));
  if (c.head_size > 0) {  // llama.cpp's names for a head size other than dim / n_heads
    w.Set(key("attention.key_length"), GgufValue::U32(c.head_dim()));
    w.Set(key("attention.value_length"), GgufValue::U32(c.head_dim()));
  }
  if (c.rope.freq_scale != 1.0f) {
    w.Set(key("rope.scaling.type"), GgufValue::Str("linear"));
    w.Set(key("rope.scaling.factor"), GgufValue::F32(1.0f / c.rope.freq_scale));
  }
  w.Set(key("attention.layer_norm_rms_epsilon"), GgufValue::F32(c.rms_eps));
  w.Set(key("vocab_size"), GgufValue::U32(c.vocab_size));

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
  const std::vector<int64_t> q_rows =
      permute ? NeoxToNormRows(c.n_heads, c.head_dim()) : std::vector<int64_t>{};
  const std::vector<int64_t> k_rows =
      permute ? NeoxToNormRows(c.n_kv_heads, c.head_dim()) : std::vector<int64_t>{};
  TensorEncoder enc(opt.matrix_type);
  enc.AddMatrix(w, "token_embd.weight", mw.tok_embd);
  enc.AddVector(w, "output_norm.weight", mw.output_norm, c.dim);
  if (!c.rope.freq_factors.empty()) {  // Llama-3.1 RoPE scaling, as llama.cpp stores it
    enc.AddVector(w, "rope_freqs.weight", c.rope.freq_factors.data(),
                  static_cast<int64_t>(c.rope.freq_factors.size()));
  }
  // Written separately even when tied, as llama.cpp's llama2.c converter does.
  enc.AddMatrix(w, "output.weight", mw.output);
  for (int l = 0; l < c.n_layers; ++l) {
    const LayerWeights& lw = mw.layers[l];
    const std::string p = "blk." + std::to_string(l) + ".";
    enc.AddVector(w, p + "attn_norm.weight", lw.attn_norm, c.dim);
    enc.AddMatrix(w, p + "attn_q.weight", lw.wq, q_rows);
    enc.AddMatrix(w, p + "attn_k.weight", lw.wk, k_rows);
    enc.AddMatrix(w, p + "attn_v.weight", lw.wv);
    enc.AddMatrix(w, p + "attn_output.weight", lw.wo);
    // Biases follow their rows through the permutation (llama.cpp permutes q_proj.bias too).
    if (lw.bq != nullptr) enc.AddVector(w, p + "attn_q.bias", lw.bq, c.q_dim(), q_rows);
    if (lw.bk != nullptr) enc.AddVector(w, p + "attn_k.bias", lw.bk, c.kv_dim(), k_rows);
    if (lw.bv != nullptr) enc.AddVector(w, p + "attn_v.bias", lw.bv, c.kv_dim());
    if (c.qk_norm) {
      enc.AddVector(w, p + "attn_q_norm.weight", lw.q_norm, c.head_dim());
      enc.AddVector(w, p + "attn_k_norm.weight", lw.k_norm, c.head_dim());
    }
    enc.AddVector(w, p + "ffn_norm.weight", lw.ffn_norm, c.dim);
    enc.AddMatrix(w, p + "ffn_gate.weight", lw.w_gate);
    enc.AddMatrix(w, p + "ffn_down.weight", lw.w_down);
    enc.AddMatrix(w, p + "ffn_up.weight", lw.w_up);
  }
  w.Write(out_path);
}

}  // namespace cqkv
