// Pieces shared by the GGUF reader (gguf.cc) and writer (gguf_writer.cc): format constants,
// type names and the tensor size rule. Internal to src/gguf; not part of the public API.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gguf/gguf.h"

namespace cqkv::gguf_internal {

inline constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian uint32
inline constexpr uint64_t kDefaultAlignment = 32;
inline constexpr uint32_t kMaxDims = 4;        // GGML_MAX_DIMS
inline constexpr uint64_t kMaxNameBytes = 64;  // GGML_MAX_NAME: names are shorter, NUL included

const char* ValueTypeName(GgufType t);
// Bytes of one scalar of type `t` in the file (0 for strings and arrays).
uint64_t ScalarWidth(GgufType t);
bool IsSupportedDType(uint32_t ggml_type_id);
bool IsIntegerType(GgufType t);

inline uint64_t AlignUp(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }
inline bool IsPowerOfTwo(uint64_t x) { return x != 0 && (x & (x - 1)) == 0; }

// Bytes of a tensor of `type` with shape `ne`. Throws cqkv::Error prefixed with `where` naming
// tensor `name` when ne[0] is not a whole number of blocks or the size overflows.
uint64_t TensorBytes(DType type, const std::vector<int64_t>& ne, const std::string& where,
                     const std::string& name);

}  // namespace cqkv::gguf_internal
