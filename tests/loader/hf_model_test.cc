// Hugging Face folders through LoadModel: a random model written as HF tensors runs exactly as
// the in-memory model with NEOX RoPE (same weights, same kernels: bitwise), shards and tied
// embeddings load, and config.json / index problems are refused with the file and key named.
// The real-model fixture (stories260K via NumPy) is tests/reference/test_hf_folder.py.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>

#include "hf_testing.h"
#include "loader/hf_config.h"
#include "loader/loader.h"
#include "model/llama.h"
#include "random_model.h"
#include "test_util.h"

namespace cqkv {
namespace {

using nlohmann::json;
using testing::ExpectErrorMentioning;
using testing::HfConfigJson;
using testing::HfTensors;
using testing::WriteHfFolder;

std::string TempDir(const std::string& name) { return ::testing::TempDir() + "/hf_" + name; }

std::vector<float> Logits(const Model& m, const std::vector<int32_t>& ids) {
  ThreadPool pool(2);
  LlamaForward fwd(m, pool);
  auto cache = MakeCacheFor(m, "fp32", static_cast<int>(ids.size()));
  std::vector<float> out(ids.size() * m.config.vocab_size);
  fwd.Forward(ids, *cache, Mat(out.data(), static_cast<int64_t>(ids.size()), m.config.vocab_size));
  return out;
}

const std::vector<int32_t> kIds = {1, 7, 3, 42, 9, 11, 0, 25, 31, 5};

std::unique_ptr<Model> NeoxModel() {
  ModelConfig c = testing::SmallConfig();
  c.rope.type = RopeType::kNeox;
  c.rope.freq_base = 50000.0f;
  return testing::MakeRandomModel(c, 17);
}

TEST(HfModel, FolderRunsAsTheModelWithNeoxRope) {
  auto src = NeoxModel();
  for (int shards : {1, 3}) {
    const std::string dir = TempDir("model" + std::to_string(shards));
    WriteHfFolder(dir, HfConfigJson(src->config, false), HfTensors(*src, false), shards);
    auto m = LoadModel(dir);
    EXPECT_EQ(m->file_format, "safetensors");
    EXPECT_EQ(m->config.rope.type, RopeType::kNeox);
    EXPECT_EQ(m->config.rope.freq_base, 50000.0f);
    EXPECT_EQ(m->config.n_kv_heads, src->config.n_kv_heads);
    EXPECT_EQ(m->tokenizer, nullptr);  // no tokenizer.json in the folder
    EXPECT_EQ(Logits(*m, kIds), Logits(*src, kIds)) << shards << " shard(s)";
  }
}

// The path of the file mapping `p` points into, from /proc/self/maps ("" when none).
std::string MappedPathOf(const void* p) {
  std::ifstream maps("/proc/self/maps");
  const auto addr = reinterpret_cast<uintptr_t>(p);
  std::string line;
  while (std::getline(maps, line)) {
    uintptr_t lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx", &lo, &hi) != 2 || addr < lo || addr >= hi) continue;
    const size_t slash = line.find('/');
    return slash == std::string::npos ? "" : line.substr(slash);
  }
  return "";
}

// Weights are views into the mapped shards, not copies: each matrix and F32 norm points into
// the mapping of the shard the index names for it.
TEST(HfModel, WeightsPointIntoTheMappedShards) {
  auto src = NeoxModel();
  const std::string dir = TempDir("mapped");
  WriteHfFolder(dir, HfConfigJson(src->config, false), HfTensors(*src, false), 3);
  auto m = LoadModel(dir);
  const json index = json::parse(std::ifstream(dir + "/model.safetensors.index.json"));
  auto shard_of = [&](const std::string& name) {
    return std::filesystem::canonical(dir + "/" + index["weight_map"][name].get<std::string>())
        .string();
  };
  const LayerWeights& l1 = m->weights.layers[1];
  EXPECT_EQ(MappedPathOf(l1.wq.data), shard_of("model.layers.1.self_attn.q_proj.weight"));
  EXPECT_EQ(MappedPathOf(l1.w_down.data), shard_of("model.layers.1.mlp.down_proj.weight"));
  EXPECT_EQ(MappedPathOf(m->weights.tok_embd.data), shard_of("model.embed_tokens.weight"));
  EXPECT_EQ(MappedPathOf(l1.ffn_norm), shard_of("model.layers.1.post_attention_layernorm.weight"));
  EXPECT_TRUE(m->weights.owned_norms.empty());
}

// Qwen2 (Q/K/V biases) and Qwen3 (per-head Q/K norms, head size 32 on a residual of 64 with 4
// heads): the extra tensors are read and used.
TEST(HfModel, QwenFoldersRunAsTheModel) {
  for (bool qwen3 : {false, true}) {
    ModelConfig c = testing::SmallConfig();
    c.rope.type = RopeType::kNeox;
    c.rope.freq_base = 1e6f;
    c.attn_bias = !qwen3;
    c.qk_norm = qwen3;
    if (qwen3) c.head_size = 32;
    auto src = testing::MakeRandomModel(c, 23);
    const std::string dir = TempDir(qwen3 ? "qwen3" : "qwen2");
    WriteHfFolder(dir, HfConfigJson(c, false), HfTensors(*src, false), 2);
    auto m = LoadModel(dir);
    EXPECT_EQ(m->config.arch, qwen3 ? "qwen3" : "qwen2");
    EXPECT_EQ(m->config.q_dim(), qwen3 ? 128 : 64);
    EXPECT_EQ(Logits(*m, kIds), Logits(*src, kIds)) << m->config.arch;
    // Without the extra tensors the folder is refused, naming one.
    auto plain = HfTensors(*src, false);
    std::erase_if(plain, [](const testing::StTensor& t) {
      return t.name.find("bias") != std::string::npos || t.name.find("_norm.") != std::string::npos;
    });
    WriteHfFolder(dir, HfConfigJson(c, false), plain);
    ExpectErrorMentioning([&] { LoadModel(dir); },
                          {"missing tensor", qwen3 ? "q_norm.weight" : "q_proj.bias"});
  }
}

TEST(HfModel, TiedEmbeddingsUseEmbedTokens) {
  auto src = NeoxModel();
  src->weights.output = src->weights.tok_embd;
  const std::string dir = TempDir("tied");
  WriteHfFolder(dir, HfConfigJson(src->config, true), HfTensors(*src, true));
  auto m = LoadModel(dir);
  EXPECT_EQ(m->weights.output.data, m->weights.tok_embd.data);
  EXPECT_EQ(Logits(*m, kIds), Logits(*src, kIds));
  // Not tied in config.json but no lm_head: a missing tensor.
  WriteHfFolder(dir, HfConfigJson(src->config, false), HfTensors(*src, true));
  ExpectErrorMentioning([&] { LoadModel(dir); }, {dir, "missing tensor 'lm_head.weight'"});
}

TEST(HfModel, RefusesWrongShapes) {
  auto src = NeoxModel();
  json cfg = HfConfigJson(src->config, false);
  cfg["intermediate_size"] = src->config.hidden_dim + 2;
  const std::string dir = TempDir("shape");
  WriteHfFolder(dir, cfg, HfTensors(*src, false));
  ExpectErrorMentioning(
      [&] { LoadModel(dir); },
      {"model.safetensors", "model.layers.0.mlp.gate_proj.weight", "[96, 64]", "[98, 64]"});
}

TEST(HfModel, UnreadableTokenizerJsonIsAnErrorThatPointsToTokenizerFlag) {
  auto src = NeoxModel();
  const std::string dir = TempDir("badtok");
  WriteHfFolder(dir, HfConfigJson(src->config, false), HfTensors(*src, false));
  std::ofstream(dir + "/tokenizer.json") << "{\"model\": 3}";
  ExpectErrorMentioning([&] { LoadModel(dir); }, {"tokenizer.json", "--tokenizer"});
}

TEST(HfModel, RefusesInconsistentIndexes) {
  auto src = NeoxModel();
  const std::string dir = TempDir("index");
  const auto tensors = HfTensors(*src, false);
  const std::string index = dir + "/model.safetensors.index.json";
  auto with_index = [&](const std::function<void(json&)>& edit) {
    WriteHfFolder(dir, HfConfigJson(src->config, false), tensors, 2);
    json j = json::parse(std::ifstream(index));
    edit(j);
    std::ofstream(index) << j.dump();
  };
  with_index([](json& j) { j["weight_map"]["model.norm.weight"] = "../model.safetensors"; });
  ExpectErrorMentioning([&] { LoadModel(dir); }, {index, "'model.norm.weight'", "not a file name"});
  with_index([](json& j) { j["weight_map"]["extra.weight"] = "model-00001-of-00002.safetensors"; });
  ExpectErrorMentioning([&] { LoadModel(dir); }, {"'extra.weight'", "listed in the index"});
  with_index([](json& j) { j["weight_map"].erase("model.norm.weight"); });
  ExpectErrorMentioning([&] { LoadModel(dir); }, {"'model.norm.weight'", "not listed"});
  with_index(
      [](json& j) { j["weight_map"]["model.norm.weight"] = "model-00001-of-00002.safetensors"; });
  ExpectErrorMentioning([&] { LoadModel(dir); }, {"'model.norm.weight'", "index puts it"});
  // The same tensor in two shards.
  WriteHfFolder(dir, HfConfigJson(src->config, false), tensors, 2);
  testing::WriteBytes(dir + "/model-00002-of-00002.safetensors",
                      testing::SafetensorsBytes({tensors[0], tensors[1]}));
  ExpectErrorMentioning([&] { LoadModel(dir); }, {"'model.embed_tokens.weight'", "also in"});
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/config.json") << HfConfigJson(src->config, false).dump();
  ExpectErrorMentioning([&] { LoadModel(dir); }, {dir, "neither model.safetensors"});
}

// config.json alone: defaults, nesting and refusals.
class HfConfigTest : public ::testing::Test {
 protected:
  HfConfig Read(const json& j) {
    std::ofstream(path_) << j.dump();
    return ReadHfConfig(path_);
  }
  void ExpectRefused(const json& j, const std::vector<std::string>& parts) {
    std::ofstream(path_) << j.dump();
    auto all = parts;
    all.push_back(path_);
    ExpectErrorMentioning([&] { ReadHfConfig(path_); }, all);
  }
  json Minimal() const {
    return {{"architectures", {"MistralForCausalLM"}},
            {"hidden_size", 64},
            {"intermediate_size", 96},
            {"num_hidden_layers", 2},
            {"num_attention_heads", 4},
            {"vocab_size", 50}};
  }
  std::string path_ = ::testing::TempDir() + "/hf_config.json";
};

TEST_F(HfConfigTest, DefaultsFollowTransformers) {
  const HfConfig h = Read(Minimal());
  EXPECT_EQ(h.architecture, "MistralForCausalLM");
  EXPECT_EQ(h.model.arch, "llama");
  EXPECT_EQ(h.model.n_kv_heads, 4);  // num_key_value_heads defaults to num_attention_heads
  EXPECT_EQ(h.model.max_seq_len, 2048);
  EXPECT_FLOAT_EQ(h.model.rms_eps, 1e-6f);
  EXPECT_EQ(h.model.rope.freq_base, 10000.0f);
  EXPECT_EQ(h.model.rope.type, RopeType::kNeox);
  EXPECT_FALSE(h.tie_word_embeddings);
}

TEST_F(HfConfigTest, ReadsRopeAndWindowVariants) {
  json j = Minimal();
  j["rope_theta"] = 1e6;
  j["rope_scaling"] = nullptr;
  j["head_dim"] = 16;
  j["num_key_value_heads"] = 2;
  j["max_position_embeddings"] = 32768;
  j["sliding_window"] = 4096;
  HfConfig h = Read(j);
  EXPECT_EQ(h.model.rope.freq_base, 1e6f);
  EXPECT_EQ(h.model.n_kv_heads, 2);
  EXPECT_EQ(h.model.max_seq_len, 4096);
  j = Minimal();
  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 500000.0}};
  EXPECT_EQ(Read(j).model.rope.freq_base, 500000.0f);
  j["rope_scaling"] = {{"type", "default"}};
  EXPECT_NO_THROW(Read(j));
}

TEST_F(HfConfigTest, HeadDimMayDifferFromHiddenOverHeads) {
  json j = Minimal();
  j["head_dim"] = 32;  // 4 heads of 32 on a residual of 64: Q is 128 wide
  const HfConfig h = Read(j);
  EXPECT_EQ(h.model.head_dim(), 32);
  EXPECT_EQ(h.model.q_dim(), 128);
}

TEST_F(HfConfigTest, LinearAndLlama3RopeScaling) {
  json j = Minimal();
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 4.0}};
  EXPECT_EQ(Read(j).model.rope.freq_scale, 0.25f);
  // Llama-3.1-8B's values on heads of 16 (8 pairs): wavelengths 2*pi*500000^(i/8) are 6.3, 33,
  // ..., 6.1e5; those under 8192/4 = 2048 keep factor 1, those over 8192 get 8, between them
  // 1 / ((1 - s)/8 + s) with s = (8192/wavelen - 1) / 3.
  j = Minimal();
  j["rope_theta"] = 500000.0;
  j["rope_scaling"] = {{"rope_type", "llama3"},
                       {"factor", 8.0},
                       {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0},
                       {"original_max_position_embeddings", 8192}};
  const std::vector<float> f = Read(j).model.rope.freq_factors;
  ASSERT_EQ(f.size(), 8u);
  for (int i = 0; i < 8; ++i) {
    const double wavelen = 2 * M_PI * std::pow(500000.0, i / 8.0);
    double want = wavelen < 2048 ? 1.0 : wavelen > 8192 ? 8.0 : 0.0;
    if (want == 0.0) {
      const double s = (8192 / wavelen - 1) / 3;
      want = 1 / ((1 - s) / 8 + s);
    }
    EXPECT_NEAR(f[i], want, 1e-6 * want) << i;
  }
  EXPECT_EQ(f[0], 1.0f);
  EXPECT_EQ(f[7], 8.0f);
  EXPECT_EQ(f[3], 1.0f);                            // wavelength 862: kept
  EXPECT_TRUE(f[4] > 1.0f && f[4] < 8.0f) << f[4];  // wavelength 4443: interpolated
  j["rope_scaling"]["high_freq_factor"] = 0.5;
  ExpectRefused(j, {"high_freq_factor"});
}

TEST_F(HfConfigTest, QwenArchitectures) {
  json j = Minimal();
  j["architectures"] = {"Qwen2ForCausalLM"};
  j["sliding_window"] = 512;  // Qwen keeps it but uses it only with use_sliding_window
  j["use_sliding_window"] = false;
  HfConfig h = Read(j);
  EXPECT_EQ(h.model.arch, "qwen2");
  EXPECT_TRUE(h.model.attn_bias);
  EXPECT_FALSE(h.model.qk_norm);
  EXPECT_EQ(h.model.max_seq_len, 2048);
  j["architectures"] = {"Qwen3ForCausalLM"};
  h = Read(j);
  EXPECT_EQ(h.model.arch, "qwen3");
  EXPECT_FALSE(h.model.attn_bias);
  EXPECT_TRUE(h.model.qk_norm);
  EXPECT_EQ(h.model.rope.type, RopeType::kNeox);
  j["use_sliding_window"] = true;
  ExpectRefused(j, {"use_sliding_window"});
}

TEST_F(HfConfigTest, RefusesWhatTheForwardPassDoesNotCompute) {
  json j = Minimal();
  j["architectures"] = {"Qwen2MoeForCausalLM"};
  ExpectRefused(j, {"Qwen2MoeForCausalLM", "not supported"});
  j["architectures"] = {"LlamaForCausalLM", "MistralForCausalLM"};
  ExpectRefused(j, {"architectures"});
  j = Minimal();
  j["rope_scaling"] = {{"type", "dynamic"}, {"factor", 2.0}};
  ExpectRefused(j, {"rope_scaling", "'dynamic'"});
  j = Minimal();
  j["rope_parameters"] = {{"rope_type", "yarn"}};
  ExpectRefused(j, {"rope_parameters", "'yarn'"});
  j = Minimal();
  j["head_dim"] = 15;
  ExpectRefused(j, {"head size 15 is odd"});
  j = Minimal();
  j["hidden_size"] = 66;
  ExpectRefused(j, {"hidden_size 66", "num_attention_heads 4"});
  j = Minimal();
  j["hidden_act"] = "gelu";
  ExpectRefused(j, {"hidden_act", "gelu"});
  j = Minimal();
  j["attention_bias"] = true;
  ExpectRefused(j, {"attention_bias"});
  j = Minimal();
  j["num_key_value_heads"] = 3;
  ExpectRefused(j, {"num_key_value_heads 3"});
  j = Minimal();
  j.erase("vocab_size");
  ExpectRefused(j, {"missing key \"vocab_size\""});
  j = Minimal();
  j["hidden_size"] = "64";
  ExpectRefused(j, {"\"hidden_size\"", "not an integer"});
  std::ofstream(path_) << "{not json";
  ExpectErrorMentioning([&] { ReadHfConfig(path_); }, {path_, "not valid JSON"});
}

}  // namespace
}  // namespace cqkv
