// Writes a loaded model (a llama2.c checkpoint, a Hugging Face folder, a GGUF) and its
// vocabulary as a GGUF v3 file of its architecture (`llama`, `qwen2`, `qwen3`) with llama.cpp's
// metadata and tensor names, so every feature can also be exercised through GGUF.
#pragma once

#include <string>

#include "loader/loader.h"

namespace cqkv {

struct ConvertOptions {
  std::string name = "cqkv-converted";  // general.name
  DType matrix_type = DType::kF32;      // F32, F16, BF16, Q8_0 or Q4_0 for 2-D weights
};

// llama2.c and GGUF `llama` pair RoPE channels (2i, 2i+1), so their Q/K rows are copied as they
// are; a `llama` model with NEOX RoPE (a Hugging Face folder) has its Q/K rows and biases permuted
// to that pairing, as llama.cpp's converter does; qwen2/qwen3 keep NEOX rows. A vocabulary
// shorter than the embedding is padded with unused "[PAD<id>]" tokens. Throws cqkv::Error naming
// the output file on failure; never leaves a partial file.
void WriteModelAsGguf(const Model& model, const Vocab& vocab, const std::string& out_path,
                      const ConvertOptions& opt);

}  // namespace cqkv
