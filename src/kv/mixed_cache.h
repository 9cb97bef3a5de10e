// The mixed-precision KV cache (`--kv` specs of kv/mixed_spec.h): a composite of one sub-cache per
// distinct format, each covering only the layers that use it (its shape has that many layers).
// A layer with one format attends through its sub-cache's own kernels. A layer split between a
// key format A and a value format B appends its tokens to both sub-caches and attends with A's
// keys and B's values, read as rows (KvCache::ReadRows) into scratch for the dense kernels; A's
// copy of the values and B's copy of the keys are stored but never read, and are counted
// (PageBytes, BytesPerToken) since they take memory.
// Paging: one composite page holds every sub-cache's page for the same tokens side by side,
// each at a 64-byte aligned offset; the composite takes pages from its pool and lends them to the
// sub-caches (KvCache::LendPages), so one pool and one budget serve the whole sequence.
#pragma once

#include <memory>

#include "kv/kv_cache.h"
#include "kv/kv_spec.h"

namespace cqkv {

// A cache for a kMixed spec (ParseKvSpec). Throws cqkv::Error naming the spec and the part at
// fault when the layers do not resolve for shape.n_layers, or naming a sub-format that cannot
// be made for this shape (a cq codebook is checked against the whole model, then sliced to the
// layers that use it).
std::unique_ptr<KvCache> MakeMixedCache(const KvSpec& spec, const KvShape& shape);

}  // namespace cqkv
