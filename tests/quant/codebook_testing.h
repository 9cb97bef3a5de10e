// Helpers for the .cqcb file tests: random codebook sets, temporary paths, and edits of a saved
// file's header or checksum that keep every other byte.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <random>
#include <string>

#include "quant/codebook.h"

namespace cqkv::testing {

inline CodebookSet RandomSet(CqConfig cfg, int n_layers, int n_kv_heads, int head_dim,
                             uint64_t seed) {
  CodebookSet s;
  s.config = cfg;
  s.keys = KeyPosition::kPreRope;
  s.fisher = true;
  s.n_layers = n_layers;
  s.n_kv_heads = n_kv_heads;
  s.head_dim = head_dim;
  s.model_fingerprint = 0xfedcba9876543210ull;
  s.model_name = "tiny \"model\".bin";
  s.calibration = "c4 docs 0..9, 4x64 tokens";
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::normal_distribution<float> nd;
  const size_t floats = static_cast<size_t>(s.n_groups()) * cfg.n_centroids() * cfg.channels;
  for (int t = 0; t < 2 * n_layers; ++t) {
    s.centroids.emplace_back(floats);
    for (auto& v : s.centroids.back()) v = nd(rng);
    s.objective.push_back(0.1 + 1.0 / 3.0 * t);
  }
  return s;
}

// RandomSet with `kind` values (additive or residual): random bases, the V tables their
// expansions by `expand` (ExpandAdditive or ExpandResidual).
inline CodebookSet RandomValueBasisSet(CqConfig cfg, int n_layers, int n_kv_heads, int head_dim,
                                       uint64_t seed, ValueKind kind,
                                       void (*expand)(const float*, int, int, float*)) {
  CodebookSet s = RandomSet(cfg, n_layers, n_kv_heads, head_dim, seed);
  s.values = kind;
  std::mt19937 rng(static_cast<uint32_t>(seed) + 1);
  std::normal_distribution<float> nd;
  const int per_basis = s.value_basis_rows() * cfg.channels;
  const int per_table = cfg.n_centroids() * cfg.channels;
  for (int l = 0; l < n_layers; ++l) {
    s.value_basis.emplace_back(static_cast<size_t>(s.n_groups()) * per_basis);
    for (auto& v : s.value_basis.back()) v = nd(rng);
    for (int g = 0; g < s.n_groups(); ++g) {
      expand(s.value_basis[l].data() + g * per_basis, cfg.bits, cfg.channels,
             s.centroids[2 * l + 1].data() + g * per_table);
    }
  }
  return s;
}

inline std::string TempPath(const std::string& name) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  return (std::filesystem::temp_directory_path() /
          (std::string("cqkv_codebook_") + info->name() + "_" + name))
      .string();
}

// `bytes` (a saved .cqcb) with its JSON header replaced by `edit(header)`, lengths and checksum
// recomputed, so only the header's content is wrong.
inline std::string WithHeader(const std::string& bytes,
                              const std::function<std::string(std::string)>& edit) {
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data() + 8, 8);
  const std::string header = edit(bytes.substr(16, header_len));
  std::string out = bytes.substr(0, 8);
  const uint64_t n = header.size();
  out.append(reinterpret_cast<const char*>(&n), 8);
  out += header;
  out += bytes.substr(16 + header_len, bytes.size() - 16 - header_len - 8);
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a, as the format specifies
  for (unsigned char c : out) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  out.append(reinterpret_cast<const char*>(&h), 8);
  return out;
}

inline std::string Replace(std::string s, const std::string& from, const std::string& to) {
  const size_t at = s.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) s.replace(at, from.size(), to);
  return s;
}

inline std::string WithChecksum(std::string b) {
  b.resize(b.size() - 8);
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : b) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  b.append(reinterpret_cast<const char*>(&h), 8);
  return b;
}

// `bytes` (a saved .cqcb) with its last float (the last value of the last section, just before
// the checksum) raised by 1 and the checksum left as it was.
inline std::string WithLastFloatRaised(std::string bytes) {
  float v;
  std::memcpy(&v, bytes.data() + bytes.size() - 12, 4);
  v += 1.0f;
  std::memcpy(bytes.data() + bytes.size() - 12, &v, 4);
  return bytes;
}

}  // namespace cqkv::testing
