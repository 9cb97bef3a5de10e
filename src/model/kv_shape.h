// The KV-cache shape of a model (the KV layer knows shapes, not model configurations).
#pragma once

#include "kv/kv_cache.h"
#include "model/config.h"

namespace cqkv {

// Layers, heads, head dim and RoPE parameters of `c`, with capacity `max_tokens`.
KvShape KvShapeFor(const ModelConfig& c, int max_tokens);

}  // namespace cqkv
