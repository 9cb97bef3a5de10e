// NormalFloat KV format `nf<B>[:g<G>]` (B in 2, 3, 4): each token's K (post-RoPE) and V channels
// in groups of G (default head_dim), absmax-scaled (fp16) onto QLoRA's NormalFloat levels, which
// suit the bell-shaped values uniform grids waste codes on.
#pragma once

#include <memory>
#include <string>

#include "kv/kv_spec.h"
#include "kv/quant_cache.h"

namespace cqkv {

// Throws cqkv::Error naming the spec when G does not divide head_dim.
std::unique_ptr<QuantKvCache> MakeNfCache(const KvSpec& spec, const KvShape& shape);
// Parses `spec` first (ParseKvSpec).
std::unique_ptr<QuantKvCache> MakeNfCache(const std::string& spec, const KvShape& shape);

}  // namespace cqkv
