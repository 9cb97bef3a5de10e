// Element types of stored weights and non-owning strided matrix views used across cqkv.
// A view never owns memory; owners are std::vector, mmap'ed files or aligned buffers.
#pragma once

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace cqkv {

// Storage types of weight tensors. Values match GGML's type ids so GGUF files map directly.
enum class DType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ2_K = 10,  // K-quants: 256-element super-blocks
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kIQ4_NL = 20,  // 4-bit indices into a fixed non-uniform table, 32-element blocks
  kBF16 = 30,
};

std::string_view DTypeName(DType t);
// Elements per quantisation block (1 for plain float types) and bytes per block.
int64_t DTypeBlockSize(DType t);
int64_t DTypeBlockBytes(DType t);
// Bytes of one row of `n` elements; n must be a multiple of the block size.
inline int64_t DTypeRowBytes(DType t, int64_t n) {
  return n / DTypeBlockSize(t) * DTypeBlockBytes(t);
}

// Row-major matrix view: rows x cols, consecutive rows `stride` elements apart.
template <typename T>
struct MatView {
  T* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t stride = 0;  // elements between row starts, >= cols

  MatView() = default;
  MatView(T* d, int64_t r, int64_t c) : data(d), rows(r), cols(c), stride(c) {}
  MatView(T* d, int64_t r, int64_t c, int64_t s) : data(d), rows(r), cols(c), stride(s) {}

  T* Row(int64_t r) const {
    assert(r >= 0 && r < rows);
    return data + r * stride;
  }
  T& operator()(int64_t r, int64_t c) const {
    assert(c >= 0 && c < cols);
    return Row(r)[c];
  }
  // Rows [r0, r0 + n).
  MatView RowRange(int64_t r0, int64_t n) const {
    assert(r0 >= 0 && r0 + n <= rows);
    return MatView(data + r0 * stride, n, cols, stride);
  }
  // Columns [c0, c0 + n) of every row.
  MatView ColRange(int64_t c0, int64_t n) const {
    assert(c0 >= 0 && c0 + n <= cols);
    return MatView(data + c0, rows, n, stride);
  }
  operator MatView<const T>() const { return MatView<const T>(data, rows, cols, stride); }
};

using Mat = MatView<float>;
using ConstMat = MatView<const float>;

// A weight matrix in its stored type: `rows` output features, each a contiguous row of `cols`
// input features (GGUF ne[0] = cols, ne[1] = rows). Points into a mapped file; never owns.
struct WeightMatrix {
  DType type = DType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;
  const void* data = nullptr;
  const char* name = "";  // tensor name for error messages

  const uint8_t* RowPtr(int64_t r) const {
    return static_cast<const uint8_t*>(data) + r * DTypeRowBytes(type, cols);
  }
};

}  // namespace cqkv
