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

// How the value groups are represented: free k-means centroids, additive binary codes (each
// centroid is b0 plus the basis vectors its code's set bits select; quant/additive.h), whose
// weighted sums are dense masked adds (kernels/attn_cq_values.h), or residual two-stage codes
// (centroid = A[high half of the code] + B[low half]; quant/residual.h). Keys are always k-means.
enum class ValueKind { kKMeans, kAdditive, kResidual };
const char* ValueKindName(ValueKind v);  // "kmeans" / "additive" / "residual"
ValueKind ParseValueKind(const std::string& text);

// How the key groups are represented. kRopeComm (quant/rope_comm.h): pre-RoPE centroids over
// groups of whole RoPE pairs, scored by rotating each decoded key in registers with the query
// folded to its block's position (kernels/attn_cq_ropecomm.h) instead of the cache's per-token
// RopeTable rotation; needs pre-RoPE keys, an even group size and NORM pairing.
enum class KeyKind { kKMeans, kRopeComm };
const char* KeyKindName(KeyKind k);  // "kmeans" / "rope-comm"
KeyKind ParseKeyKind(const std::string& text);

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
  ValueKind values = ValueKind::kKMeans;
  // Only for additive values: [layer] (n_groups, b + 1, c), row 0 of a group its offset b0, row
  // 1 + j its B_j. For residual values: [layer] (n_groups, 2 * 2^(b/2), c), rows 0..2^(b/2)-1
  // stage A (indexed by the code's high half), the next 2^(b/2) stage B (low half). The V
  // centroid tables are their expansions (ExpandAdditive, ExpandResidual), so every path that
  // reads centroids works unchanged; the file stores both and checks they agree.
  std::vector<std::vector<float>> value_basis;
  KeyKind key_kind = KeyKind::kKMeans;  // recorded from file version 3 on
  // k-means objective (weighted mean squared error per vector) per (layer * 2 + kind).
  std::vector<double> objective;

  int kv_dim() const { return n_kv_heads * head_dim; }
  int n_groups() const { return kv_dim() / config.channels; }
  // The 2^b x c centroid table of one group.
  const float* Table(int layer, int kind, int group) const {
    return centroids[static_cast<size_t>(layer) * 2 + kind].data() +
           static_cast<size_t>(group) * config.n_centroids() * config.channels;
  }
  // Rows of one group's value basis: b + 1 (additive) or 2 * 2^(b/2) (residual).
  int value_basis_rows() const {
    return values == ValueKind::kResidual ? 2 << (config.bits / 2) : config.bits + 1;
  }
  const float* ValueBasis(int layer, int group) const {
    return value_basis[static_cast<size_t>(layer)].data() +
           static_cast<size_t>(group) * value_basis_rows() * config.channels;
  }
};

// Writes `set` to `path` atomically (temp file + rename).
void SaveCodebooks(const CodebookSet& set, const std::string& path);
// Reads and verifies magic, version, sizes and checksum; throws cqkv::Error naming the file.
// Version 1 files (before value kinds) load as k-means values; version 1 and 2 files (before key
// kinds) as k-means keys. Files with k-means keys are still written as version 2.
CodebookSet LoadCodebooks(const std::string& path);

}  // namespace cqkv
