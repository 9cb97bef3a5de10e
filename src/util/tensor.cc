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
      return 32;
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
  }
  Fail("unknown dtype id {}", static_cast<uint32_t>(t));
}

}  // namespace cqkv
