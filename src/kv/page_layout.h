// How the paged formats cut one KV page (kv/page_pool.h) into regions: one per (layer, K or V,
// KV head), each holding that head's page_tokens rows contiguously, since decode attention sweeps
// one KV head at a time and a head's rows should be one stream the prefetchers follow. Regions
// are whole multiples of 64 bytes, so with 64-byte aligned pages every region is aligned too.
#pragma once

#include <cstdint>

#include "kv/kv_cache.h"

namespace cqkv {

inline int64_t AlignUp64(int64_t bytes) { return (bytes + 63) / 64 * 64; }

struct PageRegions {
  int n_layers = 0;
  int n_kv_heads = 0;
  int64_t region_bytes = 0;  // a multiple of 64

  // Regions of `region_bytes` (rounded up to 64) for every (layer, part, KV head) of `shape`.
  static PageRegions For(const KvShape& shape, int64_t region_bytes) {
    return PageRegions{shape.n_layers, shape.n_kv_heads, AlignUp64(region_bytes)};
  }
  int64_t page_bytes() const { return int64_t{n_layers} * 2 * n_kv_heads * region_bytes; }
  // Index of the region of (layer, part, kv_head) in a page (part 0 = keys, 1 = values), also
  // the order of per-sequence state kept per region (staging).
  int64_t Index(int layer, int part, int kv_head) const {
    return (int64_t{layer} * 2 + part) * n_kv_heads + kv_head;
  }
  // Its byte offset.
  int64_t Offset(int layer, int part, int kv_head) const {
    return Index(layer, part, kv_head) * region_bytes;
  }
};

}  // namespace cqkv
