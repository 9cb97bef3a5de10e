#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "gguf/gguf.h"
#include "kernels/dequant.h"
#include "loader/loader.h"
#include "model/model.h"
#include "util/error.h"
#include "util/fp16.h"

namespace cqkv {
namespace {

namespace fs = std::filesystem;

std::string TempPath(const std::string& name) {
  return ::testing::TempDir() + "cqkv_gguf_model_test_" + name;
}

void ExpectLoadError(const std::string& path, const std::vector<std::string>& parts) {
  try {
    LoadGgufModel(path);
    ADD_FAILURE() << "no cqkv::Error thrown for " << path;
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    for (const auto& p : parts)
      EXPECT_NE(msg.find(p), std::string::npos) << msg << "\n  lacks: " << p;
  }
}

// A tiny random llama GGUF mixing every stored type. Tests edit `tensors` / `kv` before Write.
struct TinyLlama {
  static constexpr int kDim = 32, kHidden = 64, kLayers = 2, kHeads = 4, kKvHeads = 2, kVocab = 40;
  struct T {
    DType type;
    std::vector<int64_t> ne;
  };
  std::map<std::string, GgufValue> kv;
  std::vector<std::pair<std::string, T>> tensors;
  std::map<std::string, std::vector<uint8_t>> data;
  std::map<std::string, std::vector<float>> values;  // replaces a tensor's generated values

  TinyLlama() {
    kv["general.architecture"] = GgufValue::Str("llama");
    kv["llama.embedding_length"] = GgufValue::U32(kDim);
    kv["llama.feed_forward_length"] = GgufValue::U32(kHidden);
    kv["llama.block_count"] = GgufValue::U32(kLayers);
    kv["llama.attention.head_count"] = GgufValue::U32(kHeads);
    kv["llama.attention.head_count_kv"] = GgufValue::U32(kKvHeads);
    kv["llama.context_length"] = GgufValue::U32(256);
    kv["llama.rope.freq_base"] = GgufValue::F32(500000.0f);
    kv["llama.attention.layer_norm_rms_epsilon"] = GgufValue::F32(1e-6f);
    const int64_t kv_dim = kKvHeads * (kDim / kHeads);
    tensors = {{"token_embd.weight", {DType::kF16, {kDim, kVocab}}},
               {"output_norm.weight", {DType::kBF16, {kDim}}}};
    for (int l = 0; l < kLayers; ++l) {
      const std::string p = "blk." + std::to_string(l) + ".";
      tensors.push_back({p + "attn_norm.weight", {DType::kF16, {kDim}}});
      tensors.push_back({p + "attn_q.weight", {DType::kQ8_0, {kDim, kDim}}});
      tensors.push_back({p + "attn_k.weight", {DType::kQ8_0, {kDim, kv_dim}}});
      tensors.push_back({p + "attn_v.weight", {DType::kQ4_0, {kDim, kv_dim}}});
      tensors.push_back({p + "attn_output.weight", {DType::kBF16, {kDim, kDim}}});
      tensors.push_back({p + "ffn_norm.weight", {DType::kF32, {kDim}}});
      tensors.push_back({p + "ffn_gate.weight", {DType::kQ4_0, {kDim, kHidden}}});
      tensors.push_back({p + "ffn_down.weight", {DType::kF32, {kHidden, kDim}}});
      tensors.push_back({p + "ffn_up.weight", {DType::kF16, {kDim, kHidden}}});
    }
  }

  T* Find(const std::string& name) {
    for (auto& [n, t] : tensors) {
      if (n == name) return &t;
    }
    return nullptr;
  }

  void Write(const std::string& path) {
    GgufWriter w;
    for (const auto& [k, v] : kv) w.Set(k, v);
    uint32_t seed = 1;
    for (const auto& [name, t] : tensors) {
      int64_t n = 1;
      for (int64_t d : t.ne) n *= d;
      std::vector<float> x(n);
      for (int64_t i = 0; i < n; ++i) x[i] = std::sin(0.1f * static_cast<float>(i + seed++));
      if (values.count(name)) x = values[name];
      auto& bytes = data[name];
      bytes.assign(DTypeRowBytes(t.type, n), 0);  // shapes keep ne[0] a whole number of blocks
      for (int64_t i = 0; i < n; ++i) {
        if (t.type == DType::kF32) std::memcpy(&bytes[4 * i], &x[i], 4);
        const uint16_t h = t.type == DType::kF16 ? F32ToF16(x[i]) : F32ToBF16(x[i]);
        if (t.type == DType::kF16 || t.type == DType::kBF16) std::memcpy(&bytes[2 * i], &h, 2);
      }
      if (t.type == DType::kQ8_0) QuantizeRowQ8_0(x.data(), n, bytes.data());
      if (t.type == DType::kQ4_0) QuantizeRowQ4_0(x.data(), n, bytes.data());
      w.AddTensor(name, t.type, t.ne, bytes.data());
    }
    w.Write(path);
  }
};

TEST(GgufModelTest, LoadsTinyMixedTypeModel) {
  const std::string path = TempPath("tiny.gguf");
  TinyLlama tiny;
  tiny.Write(path);
  auto m = LoadGgufModel(path);
  EXPECT_EQ(m->file_format, "gguf");
  EXPECT_EQ(m->path, path);
  EXPECT_EQ(m->tokenizer, nullptr);
  const ModelConfig& c = m->config;
  EXPECT_EQ(c.arch, "llama");
  EXPECT_EQ(c.dim, 32);
  EXPECT_EQ(c.hidden_dim, 64);
  EXPECT_EQ(c.n_layers, 2);
  EXPECT_EQ(c.n_heads, 4);
  EXPECT_EQ(c.n_kv_heads, 2);
  EXPECT_EQ(c.vocab_size, 40);
  EXPECT_EQ(c.max_seq_len, 256);
  EXPECT_EQ(c.rope.freq_base, 500000.0f);
  EXPECT_EQ(c.rms_eps, 1e-6f);
  EXPECT_EQ(c.rope.type, RopeType::kNorm);

  const ModelWeights& w = m->weights;
  EXPECT_EQ(w.tok_embd.type, DType::kF16);
  EXPECT_EQ(w.tok_embd.rows, 40);
  EXPECT_EQ(w.tok_embd.cols, 32);
  EXPECT_EQ(std::memcmp(w.tok_embd.data, tiny.data["token_embd.weight"].data(),
                        tiny.data["token_embd.weight"].size()),
            0);
  // No output.weight: the classifier is tied to the embeddings.
  EXPECT_EQ(w.output.data, w.tok_embd.data);
  EXPECT_EQ(w.output.rows, 40);
  ASSERT_EQ(w.layers.size(), 2u);
  const LayerWeights& l1 = w.layers[1];
  EXPECT_STREQ(l1.wk.name, "blk.1.attn_k.weight");
  EXPECT_EQ(l1.wk.type, DType::kQ8_0);
  EXPECT_EQ(l1.wk.rows, 16);
  EXPECT_EQ(l1.wk.cols, 32);
  EXPECT_EQ(l1.wv.type, DType::kQ4_0);
  EXPECT_EQ(l1.wo.type, DType::kBF16);
  EXPECT_EQ(l1.w_gate.rows, 64);
  EXPECT_EQ(l1.w_down.rows, 32);
  EXPECT_EQ(l1.w_down.cols, 64);
  EXPECT_EQ(std::memcmp(l1.w_down.data, tiny.data["blk.1.ffn_down.weight"].data(), 64 * 32 * 4), 0);
  // Rows are contiguous in stored form.
  EXPECT_EQ(l1.wk.RowPtr(1), static_cast<const uint8_t*>(l1.wk.data) + 34);

  // F16 / BF16 norms are widened; F32 ones point into the file.
  std::vector<float> want(32);
  DequantizeRowRef(DType::kF16, tiny.data["blk.1.attn_norm.weight"].data(), 32, want.data());
  EXPECT_EQ(std::memcmp(l1.attn_norm, want.data(), 32 * 4), 0);
  DequantizeRowRef(DType::kBF16, tiny.data["output_norm.weight"].data(), 32, want.data());
  EXPECT_EQ(std::memcmp(w.output_norm, want.data(), 32 * 4), 0);
  EXPECT_EQ(std::memcmp(l1.ffn_norm, tiny.data["blk.1.ffn_norm.weight"].data(), 32 * 4), 0);
  EXPECT_EQ(w.owned_norms.size(), 3u);  // output_norm + 2 attn_norm

  // The weights outlive every other handle: only Model::storage keeps the file mapped.
  EXPECT_NE(m->storage, nullptr);
}

TEST(GgufModelTest, SeparateOutputAndDefaults) {
  const std::string path = TempPath("tiny_out.gguf");
  TinyLlama tiny;
  tiny.tensors.push_back({"output.weight", {DType::kQ8_0, {32, 40}}});
  tiny.kv.erase("llama.attention.head_count_kv");
  tiny.kv.erase("llama.rope.freq_base");
  tiny.kv.erase("llama.attention.layer_norm_rms_epsilon");
  // Without head_count_kv every head has its own K/V.
  for (int l = 0; l < 2; ++l) {
    tiny.Find("blk." + std::to_string(l) + ".attn_k.weight")->ne = {32, 32};
    tiny.Find("blk." + std::to_string(l) + ".attn_v.weight")->ne = {32, 32};
  }
  tiny.Write(path);
  auto m = LoadGgufModel(path);
  EXPECT_EQ(m->config.n_kv_heads, 4);
  EXPECT_EQ(m->config.rope.freq_base, 10000.0f);
  EXPECT_EQ(m->config.rms_eps, 1e-5f);
  EXPECT_NE(m->weights.output.data, m->weights.tok_embd.data);
  EXPECT_EQ(m->weights.output.type, DType::kQ8_0);
  EXPECT_STREQ(m->weights.output.name, "output.weight");
}

TEST(GgufModelTest, ErrorsNameTheTensorOrKey) {
  const std::string path = TempPath("tiny_bad.gguf");
  {
    TinyLlama tiny;
    tiny.Find("blk.1.attn_k.weight")->ne = {32, 24};
    tiny.Write(path);
    ExpectLoadError(path, {"blk.1.attn_k.weight", "[32, 24]", "expected [32, 16]"});
  }
  {
    TinyLlama tiny;
    tiny.Find("blk.0.ffn_down.weight")->ne = {64, 32, 2};
    tiny.Write(path);
    ExpectLoadError(path, {"blk.0.ffn_down.weight", "[64, 32, 2]"});
  }
  {
    TinyLlama tiny;
    tiny.Find("output_norm.weight")->ne = {64};
    tiny.Write(path);
    ExpectLoadError(path, {"output_norm.weight", "[64]", "expected [32]"});
  }
  {
    TinyLlama tiny;
    std::erase_if(tiny.tensors, [](const auto& t) { return t.first == "blk.0.ffn_up.weight"; });
    tiny.Write(path);
    ExpectLoadError(path, {"missing tensor 'blk.0.ffn_up.weight'"});
  }
  {
    TinyLlama tiny;
    tiny.kv["general.architecture"] = GgufValue::Str("gpt2");
    tiny.Write(path);
    ExpectLoadError(path, {"'gpt2'", "not supported"});
  }
  {
    TinyLlama tiny;
    tiny.kv.erase("llama.block_count");
    tiny.Write(path);
    ExpectLoadError(path, {"llama.block_count"});
  }
  {
    TinyLlama tiny;
    tiny.kv["llama.attention.head_count_kv"] = GgufValue::U32(3);
    tiny.Write(path);
    ExpectLoadError(path, {"head_count_kv"});
  }
  {
    TinyLlama tiny;
    tiny.kv["llama.embedding_length"] = GgufValue::Str("32");
    tiny.Write(path);
    ExpectLoadError(path, {"llama.embedding_length", "string"});
  }
}

// Every tensor is consumed or refused: one cqkv would ignore (and so compute another model) is
// an error naming it, and so is a block beyond block_count.
TEST(GgufModelTest, UnusedTensorsAreRefused) {
  const std::string path = TempPath("tiny_extra.gguf");
  {
    TinyLlama tiny;
    tiny.tensors.push_back({"blk.0.attn_output.bias", {DType::kF32, {32}}});
    tiny.Write(path);
    ExpectLoadError(path, {"'blk.0.attn_output.bias'", "not used"});
  }
  {
    TinyLlama tiny;
    tiny.kv["llama.block_count"] = GgufValue::U32(1);
    tiny.Write(path);
    ExpectLoadError(path, {"'blk.1.", "block 1", "llama.block_count is 1"});
  }
  {
    TinyLlama tiny;  // a fused QKV matrix is another layout cqkv does not read
    tiny.tensors.push_back({"blk.1.attn_qkv.weight", {DType::kF32, {32, 64}}});
    tiny.Write(path);
    ExpectLoadError(path, {"'blk.1.attn_qkv.weight'", "not used"});
  }
}

TEST(GgufModelTest, HyperParametersMustBeFiniteAndSane) {
  const std::string path = TempPath("tiny_hparams.gguf");
  const auto expect = [&](const std::string& key, GgufValue v, std::vector<std::string> parts) {
    TinyLlama tiny;
    tiny.kv[key] = std::move(v);
    tiny.Write(path);
    parts.push_back(key);
    ExpectLoadError(path, parts);
  };
  expect("llama.attention.layer_norm_rms_epsilon", GgufValue::F32(INFINITY), {"inf"});
  expect("llama.attention.layer_norm_rms_epsilon", GgufValue::F32(0.0f), {"out of range"});
  expect("llama.attention.layer_norm_rms_epsilon", GgufValue::F32(-1e-5f), {"out of range"});
  expect("llama.rope.freq_base", GgufValue::F32(NAN), {"nan"});
  expect("llama.rope.freq_base", GgufValue::F32(-10000.0f), {"out of range"});
  expect("llama.rope.scaling.factor", GgufValue::F32(INFINITY), {"out of range"});
  expect("llama.rope.scaling.type", GgufValue::Str("yarn"), {"'yarn'", "not supported"});
  expect("llama.rope.scaling.attn_factor", GgufValue::F32(1.2f), {"not supported"});
  expect("llama.attention.value_length", GgufValue::U32(4), {"differs from key_length 8"});
  expect("llama.attention.key_length", GgufValue::U32(7), {"even"});
  expect("llama.rope.dimension_count", GgufValue::U32(4), {"partial RoPE"});
  expect("llama.context_length", GgufValue::U32(0), {"out of range"});
}

TEST(GgufModelTest, LinearRopeScaling) {
  const std::string path = TempPath("tiny_linear.gguf");
  TinyLlama tiny;
  tiny.kv["llama.rope.scaling.type"] = GgufValue::Str("linear");
  tiny.kv["llama.rope.scaling.factor"] = GgufValue::F32(4.0f);
  tiny.Write(path);
  EXPECT_EQ(LoadGgufModel(path)->config.rope.freq_scale, 0.25f);
  tiny.kv["llama.rope.scaling.type"] = GgufValue::Str("none");  // llama.cpp: never scale
  tiny.Write(path);
  EXPECT_EQ(LoadGgufModel(path)->config.rope.freq_scale, 1.0f);
}

// Llama-3.1: rope_freqs.weight, (head_dim / 2) divisors, becomes RopeParams::freq_factors;
// architectures without it in llama.cpp refuse it.
TEST(GgufModelTest, RopeFreqFactors) {
  const std::string path = TempPath("tiny_freqs.gguf");
  TinyLlama tiny;
  tiny.tensors.push_back({"rope_freqs.weight", {DType::kF32, {4}}});
  tiny.values["rope_freqs.weight"] = {1.0f, 1.5f, 8.0f, 40.0f};
  tiny.Write(path);
  EXPECT_EQ(LoadGgufModel(path)->config.rope.freq_factors,
            (std::vector<float>{1.0f, 1.5f, 8.0f, 40.0f}));
  tiny.values["rope_freqs.weight"] = {1.0f, 1.5f, 0.0f, 40.0f};
  tiny.Write(path);
  ExpectLoadError(path, {"rope_freqs.weight", "element 2"});

  TinyLlama wrong;
  wrong.tensors.push_back({"rope_freqs.weight", {DType::kF32, {8}}});
  wrong.Write(path);
  ExpectLoadError(path, {"rope_freqs.weight", "[8]", "expected [4]"});
}

// qwen2 / qwen3 files: NEOX RoPE, Q/K/V biases, per-head Q/K norms with key_length setting a
// head size other than dim / heads (q_dim 2 x 16 = 32 here while dim = 32 with 2 heads of 8
// would be implied, so the shapes must follow key_length).
TEST(GgufModelTest, QwenArchitectures) {
  const std::string path = TempPath("tiny_qwen.gguf");
  const auto retag = [](TinyLlama& t, const std::string& arch) {
    std::map<std::string, GgufValue> kv;
    for (auto& [k, v] : t.kv) {
      kv[k.rfind("llama.", 0) == 0 ? arch + k.substr(5) : k] = v;
    }
    kv["general.architecture"] = GgufValue::Str(arch);
    t.kv = kv;
  };
  {
    TinyLlama t;
    retag(t, "qwen2");
    for (int l = 0; l < 2; ++l) {
      const std::string p = "blk." + std::to_string(l) + ".";
      t.tensors.push_back({p + "attn_q.bias", {DType::kF32, {32}}});
      t.tensors.push_back({p + "attn_k.bias", {DType::kF32, {16}}});
      t.tensors.push_back({p + "attn_v.bias", {DType::kF16, {16}}});
    }
    t.Write(path);
    const auto m = LoadGgufModel(path);
    EXPECT_EQ(m->config.arch, "qwen2");
    EXPECT_EQ(m->config.rope.type, RopeType::kNeox);
    EXPECT_TRUE(m->config.attn_bias);
    EXPECT_FALSE(m->config.qk_norm);
    EXPECT_NE(m->weights.layers[1].bv, nullptr);
    t.tensors.push_back({"rope_freqs.weight", {DType::kF32, {4}}});
    t.Write(path);
    ExpectLoadError(path, {"'rope_freqs.weight'", "not used", "'qwen2'"});
  }
  {
    TinyLlama t;
    retag(t, "qwen3");
    t.kv["qwen3.attention.key_length"] = GgufValue::U32(16);
    t.kv["qwen3.attention.value_length"] = GgufValue::U32(16);
    for (int l = 0; l < 2; ++l) {
      const std::string p = "blk." + std::to_string(l) + ".";
      t.Find(p + "attn_q.weight")->ne = {32, 64};
      t.Find(p + "attn_k.weight")->ne = {32, 32};
      t.Find(p + "attn_v.weight")->ne = {32, 32};
      t.Find(p + "attn_output.weight")->ne = {64, 32};
      t.tensors.push_back({p + "attn_q_norm.weight", {DType::kF32, {16}}});
      t.tensors.push_back({p + "attn_k_norm.weight", {DType::kF32, {16}}});
    }
    t.Write(path);
    const auto m = LoadGgufModel(path);
    EXPECT_EQ(m->config.head_dim(), 16);
    EXPECT_EQ(m->config.q_dim(), 64);
    EXPECT_EQ(m->config.kv_dim(), 32);
    EXPECT_TRUE(m->config.qk_norm);
    EXPECT_FALSE(m->config.attn_bias);
    EXPECT_NE(m->weights.layers[0].k_norm, nullptr);
    std::erase_if(t.tensors, [](const auto& x) { return x.first == "blk.1.attn_q_norm.weight"; });
    t.Write(path);
    ExpectLoadError(path, {"missing tensor 'blk.1.attn_q_norm.weight'"});
  }
}

#define REQUIRE_SHARED(path)                          \
  if (!fs::exists(path))                              \
  GTEST_SKIP() << "shared data not found: " << (path) \
               << " (set CQKV_SHARED_DIR to the shared/ folder)"

TEST(GgufModelTest, LoadsStories260K) {
  const std::string dir = std::string(CQKV_SHARED_DIR) + "/models/stories260K";
  const std::string path = dir + "/stories260K.llamacpp.gguf";
  REQUIRE_SHARED(path);
  auto m = LoadGgufModel(path);
  const ModelConfig& c = m->config;
  EXPECT_EQ(c.dim, 64);
  EXPECT_EQ(c.hidden_dim, 172);
  EXPECT_EQ(c.n_layers, 5);
  EXPECT_EQ(c.n_heads, 8);
  EXPECT_EQ(c.n_kv_heads, 4);
  EXPECT_EQ(c.vocab_size, 512);
  EXPECT_EQ(c.max_seq_len, 128);  // the converter's default, not the checkpoint's 512
  EXPECT_EQ(c.rope.type, RopeType::kNorm);
  EXPECT_NEAR(c.rms_eps, 1e-5f, 1e-10f);
  EXPECT_NE(m->weights.output.data, m->weights.tok_embd.data);  // stored separately

  // The same weights as the llama2.c checkpoint it was converted from (no permutation: both
  // rotate consecutive pairs).
  const std::string bin = dir + "/model.bin";
  REQUIRE_SHARED(bin);
  auto ref = LoadLlama2cModel(bin);
  auto same = [](const WeightMatrix& a, const WeightMatrix& b) {
    return a.rows == b.rows && a.cols == b.cols && a.type == b.type &&
           std::memcmp(a.data, b.data, DTypeRowBytes(a.type, a.cols) * a.rows) == 0;
  };
  EXPECT_TRUE(same(m->weights.tok_embd, ref->weights.tok_embd));
  EXPECT_TRUE(same(m->weights.output, ref->weights.output));
  EXPECT_EQ(std::memcmp(m->weights.output_norm, ref->weights.output_norm, 64 * 4), 0);
  for (int l = 0; l < 5; ++l) {
    SCOPED_TRACE(l);
    const LayerWeights& a = m->weights.layers[l];
    const LayerWeights& b = ref->weights.layers[l];
    EXPECT_TRUE(same(a.wq, b.wq));
    EXPECT_TRUE(same(a.wk, b.wk));
    EXPECT_TRUE(same(a.wv, b.wv));
    EXPECT_TRUE(same(a.wo, b.wo));
    EXPECT_TRUE(same(a.w_gate, b.w_gate));
    EXPECT_TRUE(same(a.w_down, b.w_down));
    EXPECT_TRUE(same(a.w_up, b.w_up));
    EXPECT_EQ(std::memcmp(a.attn_norm, b.attn_norm, 64 * 4), 0);
    EXPECT_EQ(std::memcmp(a.ffn_norm, b.ffn_norm, 64 * 4), 0);
  }
}

// The llama.cpp-written architecture files in shared/models/arch (their numerics are checked in
// tests/model/llama_cpp_agreement_test.cc).
TEST(GgufModelTest, LoadsSharedArchitectureFiles) {
  const std::string dir = std::string(CQKV_SHARED_DIR) + "/models/arch/";
  REQUIRE_SHARED(dir + "qwen3-tiny.gguf");
  const auto q2 = LoadGgufModel(dir + "qwen2-tiny.gguf");
  EXPECT_EQ(q2->config.rope.type, RopeType::kNeox);
  EXPECT_EQ(q2->config.rope.freq_base, 1e6f);
  EXPECT_EQ(q2->config.n_heads / q2->config.n_kv_heads, 2);
  EXPECT_TRUE(q2->config.attn_bias);
  EXPECT_EQ(q2->weights.output.data, q2->weights.tok_embd.data);  // tied
  const auto q3 = LoadGgufModel(dir + "qwen3-tiny.gguf");
  EXPECT_EQ(q3->config.head_dim(), 64);
  EXPECT_EQ(q3->config.q_dim(), 256);  // != dim 128
  EXPECT_TRUE(q3->config.qk_norm);
  const auto l3 = LoadGgufModel(dir + "llama3-tiny.gguf");
  EXPECT_EQ(l3->config.rope.type, RopeType::kNorm);
  EXPECT_EQ(l3->config.rope.freq_base, 5e5f);
  EXPECT_EQ(l3->config.rope.freq_factors.size(), 16u);
  EXPECT_EQ(l3->config.n_heads / l3->config.n_kv_heads, 4);
}

TEST(GgufModelTest, VocabOnlyFileHasNoWeights) {
  const std::string path =
      std::string(CQKV_SHARED_DIR) + "/tests/tokenizer-vectors/ggml-vocab-llama-spm.gguf";
  REQUIRE_SHARED(path);
  ExpectLoadError(path, {"missing tensor 'token_embd.weight'"});
}

}  // namespace
}  // namespace cqkv
