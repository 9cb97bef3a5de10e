// Unquantised KV caches: fp32 (the quality reference) and fp16 (the speed baseline every
// compressed format is compared with). Keys are stored after RoPE.
#pragma once

#include <memory>

#include "kv/kv_cache.h"

namespace cqkv {

std::unique_ptr<KvCache> MakeFp32Cache(const KvShape& shape);
std::unique_ptr<KvCache> MakeFp16Cache(const KvShape& shape);

}  // namespace cqkv
