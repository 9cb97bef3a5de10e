// llama2.c checkpoints (legacy v0): a 7 x int32 header followed by fp32 arrays in a fixed order.
// The weights stay in the mapped file; the RoPE freq_cis tables are skipped (we compute RoPE).
#include <cstring>
#include <limits>
#include <memory>

#include "loader/loader.h"
#include "util/error.h"
#include "util/mapped_file.h"

namespace cqkv {
namespace {

struct Header {
  int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
};

}  // namespace

std::unique_ptr<Model> LoadLlama2cModel(const std::string& path) {
  auto file = std::make_shared<MappedFile>(path);
  CQKV_CHECK(file->size() >= sizeof(Header), "{}: too small for a llama2.c checkpoint ({} bytes)",
             path, file->size());
  Header h;
  std::memcpy(&h, file->data(), sizeof(h));
  const bool sane = h.dim > 0 && h.dim <= 65536 && h.hidden_dim > 0 && h.hidden_dim <= 1 << 20 &&
                    h.n_layers > 0 && h.n_layers <= 1024 && h.n_heads > 0 && h.n_heads <= h.dim &&
                    h.n_kv_heads > 0 && h.n_kv_heads <= h.n_heads &&
                    h.n_heads % h.n_kv_heads == 0 && h.dim % h.n_heads == 0 &&
                    (h.dim / h.n_heads) % 2 == 0 && h.vocab_size != 0 &&
                    h.vocab_size != std::numeric_limits<int32_t>::min() && h.seq_len > 0;
  CQKV_CHECK(
      sane,
      "{}: not a llama2.c checkpoint (header dim={} hidden={} layers={} heads={} kv_heads={} "
      "vocab={} seq={})",
      path, h.dim, h.hidden_dim, h.n_layers, h.n_heads, h.n_kv_heads, h.vocab_size, h.seq_len);

  auto model = std::make_unique<Model>();
  model->path = path;
  model->file_format = "llama2c";
  ModelConfig& c = model->config;
  c.dim = h.dim;
  c.hidden_dim = h.hidden_dim;
  c.n_layers = h.n_layers;
  c.n_heads = h.n_heads;
  c.n_kv_heads = h.n_kv_heads;
  const bool shared_classifier = h.vocab_size > 0;
  c.vocab_size = shared_classifier ? h.vocab_size : -h.vocab_size;
  c.max_seq_len = h.seq_len;
  c.rope_type = RopeType::kNorm;  // llama2.c rotates consecutive pairs
  const int64_t hd = c.head_dim();
  const int64_t q_dim = int64_t{c.n_heads} * hd;
  const int64_t kv_dim = int64_t{c.n_kv_heads} * hd;
  const int64_t L = c.n_layers, D = c.dim, H = c.hidden_dim, V = c.vocab_size;

  // Expected size first, so a truncated file fails before any view is made.
  const int64_t n_floats = V * D + L * D + L * q_dim * D + 2 * L * kv_dim * D + L * D * q_dim +
                           L * D + 3 * L * H * D + D + c.max_seq_len * hd +
                           (shared_classifier ? 0 : V * D);
  const int64_t expected = static_cast<int64_t>(sizeof(Header)) + n_floats * 4;
  CQKV_CHECK(static_cast<int64_t>(file->size()) == expected,
             "{}: llama2.c checkpoint size {} bytes does not match its header (expected {})", path,
             file->size(), expected);

  const float* p = reinterpret_cast<const float*>(file->data() + sizeof(Header));
  auto take = [&p](int64_t n) {
    const float* r = p;
    p += n;
    return r;
  };
  auto mat = [](const float* data, int64_t rows, int64_t cols, const char* name) {
    WeightMatrix w;
    w.type = DType::kF32;
    w.rows = rows;
    w.cols = cols;
    w.data = data;
    w.name = name;
    return w;
  };
  ModelWeights& w = model->weights;
  w.tok_embd = mat(take(V * D), V, D, "token_embedding_table");
  w.layers.resize(L);
  const float* rms_att = take(L * D);
  const float* wq = take(L * q_dim * D);
  const float* wk = take(L * kv_dim * D);
  const float* wv = take(L * kv_dim * D);
  const float* wo = take(L * D * q_dim);
  const float* rms_ffn = take(L * D);
  const float* w1 = take(L * H * D);
  const float* w2 = take(L * D * H);
  const float* w3 = take(L * H * D);
  for (int64_t l = 0; l < L; ++l) {
    LayerWeights& lw = w.layers[l];
    lw.attn_norm = rms_att + l * D;
    lw.wq = mat(wq + l * q_dim * D, q_dim, D, "wq");
    lw.wk = mat(wk + l * kv_dim * D, kv_dim, D, "wk");
    lw.wv = mat(wv + l * kv_dim * D, kv_dim, D, "wv");
    lw.wo = mat(wo + l * D * q_dim, D, q_dim, "wo");
    lw.ffn_norm = rms_ffn + l * D;
    lw.w_gate = mat(w1 + l * H * D, H, D, "w1");
    lw.w_down = mat(w2 + l * D * H, D, H, "w2");
    lw.w_up = mat(w3 + l * H * D, H, D, "w3");
  }
  w.output_norm = take(D);
  take(c.max_seq_len * hd);  // freq_cis_real + freq_cis_imag (seq_len * hd/2 each)
  w.output = shared_classifier ? w.tok_embd : mat(take(V * D), V, D, "wcls");
  model->storage = file;
  return model;
}

}  // namespace cqkv
