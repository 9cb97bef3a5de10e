// KIVI (Liu et al. 2024) KV format `kivi<B>[:g<G>][:r<R>]` (B in 1, 2, 4; defaults G = 32,
// R = 128 as in KIVI's examples): keys (post-RoPE) quantised per channel over groups of G tokens,
// values per token in groups of G channels, both asymmetric uniform with fp16 scale/min, and the
// most recent tokens kept in fp16 until they can leave in whole groups.
#pragma once

#include <memory>
#include <string>

#include "kv/kv_spec.h"
#include "kv/quant_cache.h"

namespace cqkv {

// Throws cqkv::Error naming the spec when it is malformed or G does not divide head_dim.
std::unique_ptr<QuantKvCache> MakeKiviCache(const KvSpec& spec, const KvShape& shape);

}  // namespace cqkv
