// `cqkv dump-tensor` (hidden, diagnostic): one GGUF tensor widened to fp32 by cqkv's own row
// kernels, written as raw little-endian floats, so an independent dequantiser (the NumPy one in
// tests/reference/quant_blocks_ref.py) can be compared with what the engine computes with.
#include <fmt/core.h>

#include <cstdio>
#include <vector>

#include "gguf/gguf.h"
#include "kernels/dequant.h"
#include "tools/common.h"
#include "util/error.h"

namespace cqkv::tools {

void RegisterDumpTensor(CLI::App& app) {
  struct Opts {
    std::string model, name, out;
    bool ref = false;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd = app.add_subcommand(
      "dump-tensor", "write one GGUF tensor, dequantised to fp32, as raw floats (diagnostic)");
  cmd->group("");  // hidden from `cqkv --help`: a testing aid, not a user feature
  cmd->add_option("-m,--model", o->model, "GGUF file")->required();
  cmd->add_option("--name", o->name, "tensor name, e.g. blk.0.attn_q.weight")->required();
  cmd->add_option("--out", o->out, "output file (n_elements little-endian fp32)")->required();
  cmd->add_flag("--ref", o->ref, "use the scalar reference dequantiser instead of the vector one");
  cmd->callback([o] {
    const auto g = GgufFile::Open(o->model);
    const GgufTensorInfo* t = g->FindTensor(o->name);
    CQKV_CHECK(t != nullptr, "{}: no tensor named '{}'", o->model, o->name);
    const int64_t cols = t->ne.empty() ? 1 : t->ne[0];
    const int64_t rows = t->n_elements() / cols;
    const int64_t row_bytes = DTypeRowBytes(t->type, cols);
    const auto* data = static_cast<const uint8_t*>(g->TensorData(*t));
    std::vector<float> out(static_cast<size_t>(rows * cols));
    for (int64_t r = 0; r < rows; ++r) {
      float* dst = out.data() + r * cols;
      if (o->ref) {
        DequantizeRowRef(t->type, data + r * row_bytes, cols, dst);
      } else {
        DequantizeRow(t->type, data + r * row_bytes, cols, dst);
      }
    }
    std::FILE* f = std::fopen(o->out.c_str(), "wb");
    CQKV_CHECK(f != nullptr, "--out {}: cannot open for writing", o->out);
    const size_t wrote = std::fwrite(out.data(), sizeof(float), out.size(), f);
    const bool closed = std::fclose(f) == 0;
    CQKV_CHECK(wrote == out.size() && closed, "--out {}: write failed", o->out);
    fmt::print("{} {} {} {}x{}\n", o->name, DTypeName(t->type), o->ref ? "ref" : "vector", rows,
               cols);
  });
}

}  // namespace cqkv::tools
