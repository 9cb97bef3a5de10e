// Uniform integer KV formats, the simplest baselines: `int<B>-token[:g<G>]` quantises each token's
// channels in groups of G (asymmetric, fp16 scale/min), `int<B>-channel[:g<G>]` each channel over
// groups of G tokens. The per-token cache also serves nf<B>, which differs only in its codec.
// `:hadamard` (both layouts) stores every head's rows rotated by the normalised Walsh-Hadamard
// matrix first, as llama.cpp does before its q4_0/q8_0 KV quantisation (kv/rotated_heads.h).
#pragma once

#include <memory>
#include <string>

#include "kv/kv_spec.h"
#include "kv/quant_cache.h"
#include "kv/quant_rows.h"

namespace cqkv {

// Makes an int<B>-token / int<B>-channel[:hadamard] cache (B in 1, 2, 4, 8). Throws cqkv::Error
// naming the spec when it is malformed or does not fit the shape.
std::unique_ptr<QuantKvCache> MakeIntCache(const KvSpec& spec, const KvShape& shape);

// A cache whose K (post-RoPE) and V rows are each quantised per token in groups of `group`
// channels with `codec`; group must divide head_dim (checked, naming spec).
std::unique_ptr<QuantKvCache> MakeTokenGroupCache(const std::string& spec, const KvShape& shape,
                                                  GroupCodec codec, int bits, int group);

}  // namespace cqkv
