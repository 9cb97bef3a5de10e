// Test helpers that write safetensors files and Hugging Face folders byte by byte, so the reader
// can be fed both valid files and each kind of corruption. (The end-to-end fixture from a real
// model is written independently, with NumPy, by tests/reference/test_hf_folder.py.)
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "kernels/dequant.h"
#include "model/model.h"

namespace cqkv::testing {

struct StTensor {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};

// 8-byte little-endian length + header + data: the raw layout, for hand-made corruptions.
inline std::string RawSafetensors(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + data;
}

// A well-formed file: tensors back to back in the given order, header padded to 8 bytes.
inline std::string SafetensorsBytes(const std::vector<StTensor>& tensors,
                                    const nlohmann::ordered_json& metadata = nullptr) {
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata.is_null()) h["__metadata__"] = metadata;
  std::string data;
  for (const StTensor& t : tensors) {
    h[t.name] = {{"dtype", t.dtype},
                 {"shape", t.shape},
                 {"data_offsets", {data.size(), data.size() + t.bytes.size()}}};
    data += t.bytes;
  }
  std::string header = h.dump();
  header.append((8 - header.size() % 8) % 8, ' ');
  return RawSafetensors(header, data);
}

inline std::string F32Bytes(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

inline void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// config.json with `c`'s shapes: Qwen3 when c.qk_norm, Qwen2 when c.attn_bias, else LLaMA.
inline nlohmann::json HfConfigJson(const ModelConfig& c, bool tied) {
  const char* arch = c.qk_norm     ? "Qwen3ForCausalLM"
                     : c.attn_bias ? "Qwen2ForCausalLM"
                                   : "LlamaForCausalLM";
  return {{"architectures", {arch}},
          {"head_dim", c.head_dim()},
          {"hidden_size", c.dim},
          {"intermediate_size", c.hidden_dim},
          {"num_hidden_layers", c.n_layers},
          {"num_attention_heads", c.n_heads},
          {"num_key_value_heads", c.n_kv_heads},
          {"rms_norm_eps", c.rms_eps},
          {"rope_theta", c.rope.freq_base},
          {"max_position_embeddings", c.max_seq_len},
          {"vocab_size", c.vocab_size},
          {"tie_word_embeddings", tied}};
}

// The model's weights as F32 HF tensors, rows as stored (so the folder, loaded with NEOX RoPE,
// is `m` with rope_type = kNeox). `tied` leaves out lm_head.weight.
inline std::vector<StTensor> HfTensors(const Model& m, bool tied) {
  const ModelConfig& c = m.config;
  std::vector<StTensor> t;
  auto mat = [&](const std::string& name, const WeightMatrix& w) {
    std::vector<float> v(static_cast<size_t>(w.rows * w.cols));
    for (int64_t r = 0; r < w.rows; ++r) DequantizeRow(w.type, w.RowPtr(r), w.cols, &v[r * w.cols]);
    t.push_back({name, "F32", {w.rows, w.cols}, F32Bytes(v)});
  };
  auto vec = [&](const std::string& name, const float* p, int64_t n) {
    t.push_back({name, "F32", {n}, F32Bytes(std::vector<float>(p, p + n))});
  };
  mat("model.embed_tokens.weight", m.weights.tok_embd);
  vec("model.norm.weight", m.weights.output_norm, c.dim);
  if (!tied) mat("lm_head.weight", m.weights.output);
  for (int l = 0; l < c.n_layers; ++l) {
    const LayerWeights& lw = m.weights.layers[l];
    const std::string p = "model.layers." + std::to_string(l) + ".";
    vec(p + "input_layernorm.weight", lw.attn_norm, c.dim);
    mat(p + "self_attn.q_proj.weight", lw.wq);
    mat(p + "self_attn.k_proj.weight", lw.wk);
    mat(p + "self_attn.v_proj.weight", lw.wv);
    mat(p + "self_attn.o_proj.weight", lw.wo);
    if (c.attn_bias) {
      vec(p + "self_attn.q_proj.bias", lw.bq, c.q_dim());
      vec(p + "self_attn.k_proj.bias", lw.bk, c.kv_dim());
      vec(p + "self_attn.v_proj.bias", lw.bv, c.kv_dim());
    }
    if (c.qk_norm) {
      vec(p + "self_attn.q_norm.weight", lw.q_norm, c.head_dim());
      vec(p + "self_attn.k_norm.weight", lw.k_norm, c.head_dim());
    }
    vec(p + "post_attention_layernorm.weight", lw.ffn_norm, c.dim);
    mat(p + "mlp.gate_proj.weight", lw.w_gate);
    mat(p + "mlp.up_proj.weight", lw.w_up);
    mat(p + "mlp.down_proj.weight", lw.w_down);
  }
  return t;
}

// Writes config.json and the tensors, as model.safetensors or `n_shards` shards + index.
inline void WriteHfFolder(const std::string& dir, const nlohmann::json& config,
                          const std::vector<StTensor>& tensors, int n_shards = 1) {
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/config.json") << config.dump(2);
  if (n_shards == 1) {
    WriteBytes(dir + "/model.safetensors", SafetensorsBytes(tensors));
    return;
  }
  nlohmann::json map = nlohmann::json::object();
  for (int s = 0; s < n_shards; ++s) {
    char file[64];
    std::snprintf(file, sizeof(file), "model-%05d-of-%05d.safetensors", s + 1, n_shards);
    std::vector<StTensor> part;
    for (size_t i = s; i < tensors.size(); i += n_shards) {
      part.push_back(tensors[i]);
      map[tensors[i].name] = file;
    }
    WriteBytes(dir + "/" + file, SafetensorsBytes(part));
  }
  std::ofstream(dir + "/model.safetensors.index.json")
      << nlohmann::json{{"metadata", {{"total_size", 0}}}, {"weight_map", map}}.dump(2);
}

}  // namespace cqkv::testing
