// A small, fast generator for bulk random data (synthetic model weights, benchmark caches), where
// std::mt19937 would cost more than the work it feeds. Reproducible from its seed; not meant for
// anything whose statistics matter (tests of distributions use <random>).
#pragma once

#include <cstdint>

namespace cqkv {

// xorshift64 with a seed scramble, so nearby seeds give unrelated streams.
class FastRng {
 public:
  explicit FastRng(uint64_t seed) : s_(seed * 0x9e3779b97f4a7c15ull + 1) {}
  // Uniform in [-1, 1).
  float Next() {
    s_ ^= s_ << 13;
    s_ ^= s_ >> 7;
    s_ ^= s_ << 17;
    return static_cast<float>(static_cast<int64_t>(s_ >> 11) - (int64_t{1} << 52)) *
           (1.0f / static_cast<float>(int64_t{1} << 52));
  }

 private:
  uint64_t s_;
};

}  // namespace cqkv
