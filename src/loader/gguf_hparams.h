// The GGUF architectures cqkv runs (`llama`, `qwen2`, `qwen3`: one LLaMA block with optional
// Q/K/V biases and per-head Q/K norms) and their hyper-parameters from `{arch}.*` metadata,
// checked finite and sane before any tensor is looked at.
#pragma once

#include <string_view>

#include "gguf/gguf.h"
#include "model/config.h"

namespace cqkv {

// What an architecture adds to the LLaMA block, as llama.cpp's tensor lists define it. All
// three may carry Q/K/V biases (blk.N.attn_{q,k,v}.bias, each optional, as in llama.cpp).
struct GgufArch {
  std::string_view name;  // general.architecture
  RopeType rope_type;     // how its Q/K rows are laid out for RoPE
  bool qk_norm;           // blk.N.attn_{q,k}_norm.weight, (head_dim) each, required
  bool rope_freqs;        // may carry Llama-3.1's rope_freqs.weight
};

// The architecture named by general.architecture; throws cqkv::Error naming it and the
// supported ones when cqkv cannot run it.
const GgufArch& FindGgufArch(const GgufFile& g);

// Fills every ModelConfig field except vocab_size, rope.freq_factors, attn_bias and qk_norm
// (which the tensors decide). Throws cqkv::Error naming the file and key for a missing,
// mistyped, non-finite or out-of-range value, a RoPE scaling other than none/linear, partial
// RoPE or key_length != value_length.
void ReadGgufConfig(const GgufFile& g, const GgufArch& arch, ModelConfig& c);

}  // namespace cqkv
