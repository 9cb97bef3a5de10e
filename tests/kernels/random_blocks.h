// Random rows of the block formats of kernels/block_formats.h for kernel tests: every byte
// random except the fp16 scale fields, which get finite values (real files never hold inf/nan
// scales), one of them subnormal.
#pragma once

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "util/fp16.h"
#include "util/tensor.h"

namespace cqkv::testing {

// The block formats and the byte offsets of their fp16 scale fields.
struct BlockFormatInfo {
  DType type;
  std::vector<int> half_offsets;
};

inline const std::vector<BlockFormatInfo>& BlockFormats() {
  static const std::vector<BlockFormatInfo> kFormats = {
      {DType::kQ4_1, {0, 2}}, {DType::kQ5_0, {0}},      {DType::kQ5_1, {0, 2}},
      {DType::kIQ4_NL, {0}},  {DType::kQ2_K, {80, 82}}, {DType::kQ3_K, {108}},
      {DType::kQ4_K, {0, 2}}, {DType::kQ5_K, {0, 2}},   {DType::kQ6_K, {208}}};
  return kFormats;
}

inline std::vector<uint8_t> RandomBlockRow(const BlockFormatInfo& f, int64_t n, std::mt19937& rng) {
  std::vector<uint8_t> bytes(static_cast<size_t>(DTypeRowBytes(f.type, n)));
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& b : bytes) b = static_cast<uint8_t>(byte(rng));
  std::uniform_real_distribution<float> scale(-0.1f, 0.1f);
  const int64_t bytes_per_block = DTypeBlockBytes(f.type);
  for (int64_t b = 0; b < n / DTypeBlockSize(f.type); ++b) {
    for (int off : f.half_offsets) {
      const uint16_t h = (b == 1 && off == f.half_offsets[0]) ? uint16_t{0x8003}  // subnormal
                                                              : F32ToF16(scale(rng));
      std::memcpy(&bytes[static_cast<size_t>(b * bytes_per_block + off)], &h, 2);
    }
  }
  return bytes;
}

}  // namespace cqkv::testing
