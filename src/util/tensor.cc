#include "util/tensor.h"

#include "util/error.h"

namespace cqkv {

std::string_view DTypeName(DType t) {
  switch (t) {
    case DType::kF32:
      return "F32";
    case DType::kF16:
      return "F16";
    case DType::kBF16:
      return "BF16";
    case DType::kQ8_0:
      return "Q8_0";
    case DType::kQ4_0:
      return "Q4_0";
    case DType::kQ4_1:
      return "Q4_1";
    case DType::kQ5_0:
      return "Q5_0";
    case DType::kQ5_1:
      return "Q5_1";
    case DType::kQ2_K:
      return "Q2_K";
    case DType::kQ3_K:
      return "Q3_K";
    case DType::kQ4_K:
      return "Q4_K";
    case DType::kQ5_K:
      return "Q5_K";
    case DType::kQ6_K:
      return "Q6_K";
    case DType::kIQ4_NL:
      return "IQ4_NL";
  }
  return "unknown";
}

// Sizes follow GGML's block layouts so that GGUF tensors can be used in place.
int64_t DTypeBlockSize(DType t) {
  switch (t) {
    case DType::kF32:
    case DType::kF16:
    case DType::kBF16:
      return 1;
    case DType::kQ8_0:
    case DType::kQ4_0:
    case DType::kQ4_1:
    case DType::kQ5_0:
    case DType::kQ5_1:
    case DType::kIQ4_NL:
      return 32;
    case DType::kQ2_K:
    case DType::kQ3_K:
    case DType::kQ4_K:
    case DType::kQ5_K:
    case DType::kQ6_K:
      return 256;
  }
  Fail("unknown dtype id {}", static_cast<uint32_t>(t));
}

int64_t DTypeBlockBytes(DType t) {
  switch (t) {
    case DType::kF32:
      return 4;
    case DType::kF16:
    case DType::kBF16:
      return 2;
    case DType::kQ8_0:
      return 2 + 32;  // fp16 scale + 32 int8
    case DType::kQ4_0:
      return 2 + 16;  // fp16 scale + 32 packed nibbles
    case DType::kQ4_1:
      return 2 + 2 + 16;  // fp16 scale and offset + nibbles
    case DType::kQ5_0:
      return 2 + 4 + 16;  // fp16 scale + 32 fifth bits + nibbles
    case DType::kQ5_1:
      return 2 + 2 + 4 + 16;
    case DType::kIQ4_NL:
      return 2 + 16;  // fp16 scale + 32 nibble table indices
    // Super-blocks (kernels/block_formats.h has the byte layouts).
    case DType::kQ2_K:
      return 16 + 64 + 2 + 2;
    case DType::kQ3_K:
      return 32 + 64 + 12 + 2;
    case DType::kQ4_K:
      return 2 + 2 + 12 + 128;
    case DType::kQ5_K:
      return 2 + 2 + 12 + 32 + 128;
    case DType::kQ6_K:
      return 128 + 64 + 16 + 2;
  }
  Fail("unknown dtype id {}", static_cast<uint32_t>(t));
}

}  // namespace cqkv
