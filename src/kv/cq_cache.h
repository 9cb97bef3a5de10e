// The coupled-quantization KV cache, `--kv cq:PATH[:fs][:rN]`: each token's K and V are stored as
// one b-bit centroid index per group of c channels, against the per-(layer, K/V, group) codebooks
// in PATH (quant/codebook.h); `rN` also keeps the N most recent tokens in fp16; `fs` stores keys
// in the fast-scan layout and scores them approximately (kernels/attn_cq_fastscan.h).
// Codes live in pages of shape.page_tokens tokens from a PagePool (kv/page_pool.h): per page one
// 64-byte-aligned region per (layer, K/V, KV head) holding that head's packed codes of the
// page's tokens (PageBytes). Codebooks are shared by siblings; the fp16 window is per sequence
// (FixedBytes).
#pragma once

#include <memory>
#include <string>

#include "kv/kv_cache.h"
#include "kv/kv_spec.h"
#include "quant/codebook.h"

namespace cqkv {

// "cq:PATH" with optional trailing ":fs" and ":rN" (either order). Throws cqkv::Error naming the
// spec when malformed.
struct CqSpec {
  std::string path;
  int window = 0;          // N most recent tokens kept in fp16 besides their codes
  bool fast_scan = false;  // fast-scan key layout and scoring (post-RoPE 4- or 8-bit codes)
};
CqSpec ParseCqSpec(const std::string& spec);

// Bytes per cached token of a CQ cache, split into what grows with the context (codes) and the
// fixed parts amortised over shape.max_tokens (codebooks, fp16 window of min(window, max) slots).
struct CqBytes {
  double codes = 0;   // 2 * n_layers * n_groups * b / 8
  double tables = 0;  // 2 * n_layers * n_groups * 2^b * c * 4 / max_tokens
  double window = 0;  // min(R, max_tokens) * 2 * n_layers * kv_dim * 2 / max_tokens
  double total() const { return codes + tables + window; }
};
CqBytes CqBytesPerToken(const CqConfig& config, const KvShape& shape, int window);
// Pure code bits per channel, b / c: the figure the paper names formats by (CQ-8c8b = 1 bit).
inline double CqCodeBitsPerChannel(const CqConfig& config) {
  return static_cast<double>(config.bits) / config.channels;
}

// Throws cqkv::Error (naming `source`) when `set` does not fit a cache of `shape`: different
// layer count, heads, head dim, or model fingerprint.
void CheckCodebooksFit(const CodebookSet& set, const KvShape& shape, const std::string& source);

// Codebooks with N(0, 1) centroids fitting `shape` (fingerprint included), for tests and timing
// (attention cost depends on the code layout, not on the centroid values). Post-RoPE keys by
// default: pre-RoPE ones add a rotation per key.
CodebookSet RandomCodebooks(const KvShape& shape, const CqConfig& config, uint64_t seed,
                            KeyPosition keys = KeyPosition::kPostRope);

// Loads the codebooks of a cq spec (ParseKvSpec of "cq:PATH[:rN]") and checks they fit `shape`;
// throws cqkv::Error naming the file otherwise.
std::unique_ptr<KvCache> MakeCqCache(const KvSpec& spec, const KvShape& shape);
// From codebooks already in memory (tests, calibration); format() reports `spec`. `fast_scan`:
// keys in the fast-scan layout (post-RoPE codebooks of 4 or 8 bits; throws naming `spec`).
std::unique_ptr<KvCache> MakeCqCache(CodebookSet codebooks, const KvShape& shape, int window,
                                     const std::string& spec, bool fast_scan = false);

}  // namespace cqkv
