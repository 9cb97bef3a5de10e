// llama2.c checkpoints (legacy v0): a 7 x int32 header followed by fp32 arrays in a fixed order.
// The weights stay in the mapped file; the RoPE freq_cis tables are skipped (we compute RoPE).
#include <fmt/format.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "loader/loader.h"
#include "util/error.h"
#include "util/escape.h"
#include "util/mapped_file.h"

namespace cqkv {
namespace {

struct Header {
  int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
};

// Bounds on each header field: far above any llama2.c-format model (LLaMA-2-70B has dim 8192,
// hidden 28672, 80 layers, 64 heads), low enough that every size below fits int64 with room.
constexpr int64_t kMaxDim = 65536;
constexpr int64_t kMaxHidden = 1 << 20;
constexpr int64_t kMaxLayers = 1024;
constexpr int64_t kMaxVocab = 1 << 24;
constexpr int64_t kMaxSeqLen = 1 << 24;

// The first field outside its range, or "" when the header is consistent. Checked in order, so
// later ranges can rely on earlier fields (n_heads <= dim needs dim > 0).
std::string HeaderProblem(const Header& h) {
  auto out_of = [](const char* field, int64_t v, int64_t lo, int64_t hi, const std::string& why) {
    return v >= lo && v <= hi
               ? std::string()
               : fmt::format("header field {} = {} is outside [{}, {}]{}", field, v, lo, hi, why);
  };
  for (const std::string& p : {
           out_of("dim", h.dim, 1, kMaxDim, ""),
           out_of("hidden_dim", h.hidden_dim, 1, kMaxHidden, ""),
           out_of("n_layers", h.n_layers, 1, kMaxLayers, ""),
           out_of("n_heads", h.n_heads, 1, std::max(1, h.dim), " (at most dim)"),
           out_of("n_kv_heads", h.n_kv_heads, 1, std::max(1, h.n_heads), " (at most n_heads)"),
           // Negative: the classifier is stored separately (llama2.c's convention).
           out_of("|vocab_size|",
                  h.vocab_size == INT32_MIN ? int64_t{1} << 31 : std::abs(int64_t{h.vocab_size}), 1,
                  kMaxVocab, ""),
           out_of("seq_len", h.seq_len, 1, kMaxSeqLen, ""),
       }) {
    if (!p.empty()) return p;
  }
  if (h.dim % h.n_heads != 0 || (h.dim / h.n_heads) % 2 != 0) {
    return fmt::format("dim {} is not n_heads {} x an even head size", h.dim, h.n_heads);
  }
  if (h.n_heads % h.n_kv_heads != 0) {
    return fmt::format("n_heads {} is not a multiple of n_kv_heads {}", h.n_heads, h.n_kv_heads);
  }
  return "";
}

}  // namespace

std::unique_ptr<Model> LoadLlama2cModel(const std::string& path) {
  auto file = std::make_shared<MappedFile>(path);
  const std::string name = Escaped(path);
  // Reached for every file without the GGUF magic, so a failure here says both.
  CQKV_CHECK(file->size() >= sizeof(Header),
             "{}: neither a GGUF file (no 'GGUF' magic) nor a llama2.c checkpoint (only {} "
             "bytes)",
             name, file->size());
  Header h;
  std::memcpy(&h, file->data(), sizeof(h));
  const std::string problem = HeaderProblem(h);
  CQKV_CHECK(problem.empty(),
             "{}: neither a GGUF file (no 'GGUF' magic) nor a llama2.c checkpoint ({})", name,
             problem);

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
  c.vocab_size = shared_classifier ? h.vocab_size : -h.vocab_size;  // INT32_MIN refused above
  c.max_seq_len = h.seq_len;
  c.rope.type = RopeType::kNorm;  // llama2.c rotates consecutive pairs
  const int64_t hd = c.head_dim();
  const int64_t q_dim = int64_t{c.n_heads} * hd;
  const int64_t kv_dim = int64_t{c.n_kv_heads} * hd;
  const int64_t L = c.n_layers, D = c.dim, H = c.hidden_dim, V = c.vocab_size;

  // Expected size first, so a truncated file fails before any view is made. With the header
  // bounds above every term is below 2^50 floats: no overflow.
  const int64_t n_floats = V * D + L * D + L * q_dim * D + 2 * L * kv_dim * D + L * D * q_dim +
                           L * D + 3 * L * H * D + D + c.max_seq_len * hd +
                           (shared_classifier ? 0 : V * D);
  const int64_t expected = static_cast<int64_t>(sizeof(Header)) + n_floats * 4;
  CQKV_CHECK(static_cast<int64_t>(file->size()) == expected,
             "{}: llama2.c checkpoint size {} bytes does not match its header (dim={} hidden={} "
             "layers={} heads={} kv_heads={} vocab={} seq={} need {} bytes){}",
             name, file->size(), h.dim, h.hidden_dim, h.n_layers, h.n_heads, h.n_kv_heads,
             h.vocab_size, h.seq_len, expected,
             static_cast<int64_t>(file->size()) < expected ? ": truncated" : ": trailing data");

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
