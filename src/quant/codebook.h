// Coupled-quantization codebooks: for every (layer, K/V, channel group) 2^b centroids in R^c,
// learned by calibration, plus the identity of the model they were learned on. Stored in a
// versioned, checksummed .cqcb file; using one with another model or shape is a clear error
// (CheckCodebooksFit, kv/cq_cache.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cqkv {

// CQ-<c>c<b>b: groups of `c` contiguous channels share one `b`-bit code (b/c bits per channel).
struct CqConfig {
  int channels = 4;  // c
  int bits = 8;      // b
  int n_centroids() const { return 1 << bits; }
  std::string Name() const;  // "4c8b"
  // Parses "4c8b" (c in 1..64, b in 1..16). Throws cqkv::Error naming the text.
  static CqConfig Parse(const std::string& text);
};

// Which keys the codebooks were learned on and the cache stores: before or after RoPE.
enum class KeyPosition { kPreRope, kPostRope };
const char* KeyPositionName(KeyPosition p);  // "pre-rope" / "post-rope"
KeyPosition ParseKeyPosition(const std::string& text);

struct CodebookSet {
  CqConfig config;
  KeyPosition keys = KeyPosition::kPostRope;
  bool fisher = false;  // Fisher-weighted k-means (else uniform)
  // Model identity: shapes plus a fingerprint of the model (see ModelFingerprint).
  int n_layers = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  uint64_t model_fingerprint = 0;
  std::string model_name;   // informational (file name at calibration time)
  std::string calibration;  // informational ("c4 docs 0..99, 16x256 tokens")
  // centroids[layer * 2 + kind] (kind 0 = K, 1 = V): (n_groups, 2^b, c) row-major.
  std::vector<std::vector<float>> centroids;
  // k-means objective (weighted mean squared error per vector) per (layer * 2 + kind).
  std::vector<double> objective;

  int kv_dim() const { return n_kv_heads * head_dim; }
  int n_groups() const { return kv_dim() / config.channels; }
  // The 2^b x c centroid table of one group.
  const float* Table(int layer, int kind, int group) const {
    return centroids[static_cast<size_t>(layer) * 2 + kind].data() +
           static_cast<size_t>(group) * config.n_centroids() * config.channels;
  }
};

// Writes `set` to `path` atomically (temp file + rename).
void SaveCodebooks(const CodebookSet& set, const std::string& path);
// Reads and verifies magic, version, sizes and checksum; throws cqkv::Error naming the file.
CodebookSet LoadCodebooks(const std::string& path);

}  // namespace cqkv
