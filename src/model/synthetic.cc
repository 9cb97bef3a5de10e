#include "model/synthetic.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <vector>

#include "kernels/dequant.h"
#include "util/error.h"
#include "util/fast_rng.h"

namespace cqkv {
namespace {

bool Supported(DType t) {
  return t == DType::kF32 || t == DType::kF16 || t == DType::kBF16 || t == DType::kQ8_0 ||
         t == DType::kQ4_0;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& ch : out) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return out;
}

}  // namespace

std::unique_ptr<Model> MakeSyntheticModel(const ModelConfig& c, uint64_t seed, float scale,
                                          DType matrices) {
  CQKV_CHECK(Supported(matrices),
             "synthetic models store F32, F16, BF16, Q8_0 or Q4_0 matrices, not {}",
             DTypeName(matrices));
  const int64_t block = DTypeBlockSize(matrices);
  CQKV_CHECK(c.dim % block == 0 && c.hidden_dim % block == 0 && c.q_dim() % block == 0,
             "synthetic {} matrices need rows that are multiples of {} (dim {}, hidden {})",
             DTypeName(matrices), block, c.dim, c.hidden_dim);
  auto model = std::make_unique<Model>();
  model->path = "<synthetic>";
  model->file_format = "synthetic";
  model->config = c;
  struct Store {
    std::vector<std::vector<float>> f32;
    std::vector<std::vector<uint8_t>> encoded;  // every matrix type but F32, as stored in GGUF
  };
  auto store = std::make_shared<Store>();
  store->f32.reserve(static_cast<size_t>(4 + 14 * c.n_layers));  // data pointers must stay stable
  store->encoded.reserve(static_cast<size_t>(4 + 14 * c.n_layers));
  FastRng rng(seed);
  auto alloc = [&](int64_t n, float mean, float amp) {
    auto& v = store->f32.emplace_back(static_cast<size_t>(n));
    for (auto& x : v) x = mean + amp * rng.Next();
    return v.data();
  };
  std::vector<float> row;  // the one fp32 row drawn before it is encoded
  auto mat = [&](int64_t rows, int64_t cols, const char* name) {
    if (matrices == DType::kF32) {
      return WeightMatrix{DType::kF32, rows, cols, alloc(rows * cols, 0.0f, scale), name};
    }
    const int64_t row_bytes = DTypeRowBytes(matrices, cols);
    auto& v = store->encoded.emplace_back(static_cast<size_t>(rows * row_bytes));
    row.resize(static_cast<size_t>(cols));
    for (int64_t r = 0; r < rows; ++r) {
      for (auto& x : row) x = scale * rng.Next();
      QuantizeRow(matrices, row.data(), cols, v.data() + r * row_bytes);
    }
    return WeightMatrix{matrices, rows, cols, v.data(), name};
  };
  const int64_t q_dim = c.q_dim();
  ModelWeights& w = model->weights;
  w.tok_embd = mat(c.vocab_size, c.dim, "token_embd");
  for (int l = 0; l < c.n_layers; ++l) {
    LayerWeights lw;
    lw.attn_norm = alloc(c.dim, 1.0f, 0.1f);
    lw.wq = mat(q_dim, c.dim, "attn_q");
    lw.wk = mat(c.kv_dim(), c.dim, "attn_k");
    lw.wv = mat(c.kv_dim(), c.dim, "attn_v");
    lw.wo = mat(c.dim, q_dim, "attn_output");
    lw.ffn_norm = alloc(c.dim, 1.0f, 0.1f);
    lw.w_gate = mat(c.hidden_dim, c.dim, "ffn_gate");
    lw.w_down = mat(c.dim, c.hidden_dim, "ffn_down");
    lw.w_up = mat(c.hidden_dim, c.dim, "ffn_up");
    // Drawn last, so models without these features keep the values they always had.
    if (c.attn_bias) {
      lw.bq = alloc(q_dim, 0.0f, 0.5f);
      lw.bk = alloc(c.kv_dim(), 0.0f, 0.5f);
      lw.bv = alloc(c.kv_dim(), 0.0f, 0.5f);
    }
    if (c.qk_norm) {
      lw.q_norm = alloc(c.head_dim(), 1.0f, 0.3f);
      lw.k_norm = alloc(c.head_dim(), 1.0f, 0.3f);
    }
    w.layers.push_back(lw);
  }
  w.output_norm = alloc(c.dim, 1.0f, 0.1f);
  w.output = mat(c.vocab_size, c.dim, "output");
  model->storage = store;
  return model;
}

ModelConfig SevenBShape(int n_layers, int n_kv_heads, int vocab, int ctx) {
  ModelConfig c;
  c.dim = 4096;
  c.hidden_dim = 11008;
  c.n_layers = n_layers;
  c.n_heads = 32;
  c.n_kv_heads = n_kv_heads;
  c.vocab_size = vocab;
  c.max_seq_len = ctx;
  return c;
}

DType ParseSyntheticWeights(const std::string& name, const char* flag) {
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16, DType::kQ8_0, DType::kQ4_0}) {
    if (Lower(DTypeName(t)) == Lower(name)) return t;
  }
  Fail("{} {}: unknown weight type; expected f32, f16, bf16, q8_0 or q4_0", flag, name);
}

std::string SyntheticSpec::Name() const {
  return fmt::format("synthetic-7b-{}L-kvh{}-{}", n_layers, n_kv_heads, Lower(DTypeName(weights)));
}

SyntheticSpec ParseSyntheticSpec(const std::string& text, SyntheticSpec spec, const char* flag) {
  std::vector<std::string> parts;
  for (size_t b = 0;;) {
    const size_t e = text.find(':', b);
    parts.push_back(text.substr(b, e == std::string::npos ? e : e - b));
    if (e == std::string::npos) break;
    b = e + 1;
  }
  CQKV_CHECK(Lower(parts[0]) == "7b", "{} {}: the only synthetic shape is 7b (e.g. 7b:q4_0)", flag,
             text);
  const auto number = [&](const std::string& part, size_t at) {
    size_t used = 0;
    int v = -1;
    try {
      v = std::stoi(part.substr(at), &used);
    } catch (const std::exception&) {
      used = 0;
    }
    CQKV_CHECK(used > 0 && at + used == part.size(), "{} {}: '{}' needs a whole number", flag, text,
               part);
    return v;
  };
  for (size_t i = 1; i < parts.size(); ++i) {
    const std::string& p = parts[i];
    if (p.rfind("layers=", 0) == 0) {
      spec.n_layers = number(p, 7);
      CQKV_CHECK(spec.n_layers >= 1 && spec.n_layers <= 32, "{} {}: layers must be 1..32", flag,
                 text);
    } else if (p.rfind("kvh=", 0) == 0) {
      spec.n_kv_heads = number(p, 4);
      CQKV_CHECK(spec.n_kv_heads >= 1 && spec.n_kv_heads <= 32 && 32 % spec.n_kv_heads == 0,
                 "{} {}: kvh must divide the 32 query heads", flag, text);
    } else {
      spec.weights = ParseSyntheticWeights(p, flag);
    }
  }
  return spec;
}

}  // namespace cqkv
