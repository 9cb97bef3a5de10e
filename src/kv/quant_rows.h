// Growing stores of quantised K or V rows (one row = one token's kv_dim channels of one layer),
// holding real packed codes plus fp16 side parameters: per-token groups of channels, or
// per-channel groups of tokens. The int, nf and kivi caches are built from these.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/attn_dense.h"
#include "util/tensor.h"

namespace cqkv {

// How one group of values becomes codes.
enum class GroupCodec {
  kUniform,      // asymmetric uniform: fp16 scale + fp16 min per group
  kNormalFloat,  // NormalFloat levels: fp16 absmax per group
};

// Zero bytes both row stores keep past their last row's codes, so the vector loads of the
// in-register decode kernel (IntAttend) stay in bounds.
constexpr int64_t kCodeSlack = 64;

// Rows quantised one at a time: each row splits into groups of `group` contiguous channels
// with their own parameters. Rows never change once appended.
class TokenGroupRows {
 public:
  // group must divide width.
  TokenGroupRows(GroupCodec codec, int bits, int width, int group);

  void Append(const float* row);  // width values
  void Append(ConstMat rows) {    // (n, width)
    for (int64_t i = 0; i < rows.rows; ++i) Append(rows.Row(i));
  }
  // Dequantises channels [c0, c0 + n) of row t into out; c0 and n are multiples of group.
  void Dequant(int64_t t, int c0, int n, float* out) const;
  // Rows [t0, t0 + rows) of channels [c0, c0 + n) into out + i * ld (row i), the values Dequant
  // gives; decodes codes a byte at a time where the packing allows (the decode hot path).
  void DequantBlock(int64_t t0, int64_t rows, int c0, int n, float* out, int64_t ld) const;
  // The codes of row t, for tests.
  uint32_t Code(int64_t t, int c) const;
  // The rows as the in-register decode kernel reads them (kernels/attn_dense.h, IntAttend):
  // uniform codec and a shape IntAttendSupports. False otherwise.
  bool InPlaceView(IntRowsView* view) const;

  int64_t rows() const { return rows_; }
  void Clear();
  // Bytes one row occupies: packed codes plus side parameters.
  int64_t RowBytes() const;

 private:
  int params_per_group() const { return codec_ == GroupCodec::kUniform ? 2 : 1; }

  GroupCodec codec_;
  int bits_, width_, group_;
  int64_t code_bytes_;  // PackedBytes(width, bits)
  int64_t rows_ = 0;
  std::vector<uint8_t> codes_;    // (rows, code_bytes) packed codes
  std::vector<uint16_t> params_;  // (rows, width/group, params_per_group) fp16: scale, min | absmax
};

// Rows quantised per channel over groups of `group` consecutive rows (tokens) with uniform
// asymmetric codes. The last group may be partial: its rows are kept in an fp32 staging copy
// and the whole partial group is requantised (new scale/min, new codes) whenever rows join it,
// so no row is ever read back at full precision. A full group's codes never change again and
// its staging copy is dropped.
class ChannelGroupRows {
 public:
  ChannelGroupRows(int bits, int width, int group);

  void Append(ConstMat rows);  // (n, width)
  void Dequant(int64_t t, int c0, int n, float* out) const;
  // As TokenGroupRows::DequantBlock; each token group's scale/min are decoded once per block.
  void DequantBlock(int64_t t0, int64_t rows, int c0, int n, float* out, int64_t ld) const;
  uint32_t Code(int64_t t, int c) const;
  // The rows as IntAttend reads them, when IntAttendSupports their shape. False otherwise.
  bool InPlaceView(IntRowsView* view) const;

  int64_t rows() const { return rows_; }
  void Clear();
  // Bytes held with n rows stored: codes, the parameters of ceil(n/group) groups, and the fp32
  // staging copy of the n % group rows of a partial group.
  int64_t BytesFor(int64_t n) const;

 private:
  void QuantizePartialGroup();

  int bits_, width_, group_;
  int64_t code_bytes_;
  int64_t rows_ = 0;
  std::vector<uint8_t> codes_;    // (rows, code_bytes) packed codes, one row per token
  std::vector<uint16_t> params_;  // (ceil(rows/group), width, 2) fp16 scale, min per channel
  std::vector<float> staging_;    // (rows % group, width) fp32 copy of the partial group
};

// The most bytes a cache holds over a sequence's life (1..max_tokens tokens) divided by
// max_tokens, where bytes_at(n) is what it holds with n tokens. Formats with transient buffers
// (a partial group's staging, a full-precision window) peak before they are full.
template <typename BytesAt>
double PeakBytesPerToken(int64_t max_tokens, const BytesAt& bytes_at) {
  max_tokens = max_tokens > 0 ? max_tokens : 1;
  double peak = 0;
  for (int64_t n = 1; n <= max_tokens; ++n) {
    const double b = static_cast<double>(bytes_at(n));
    peak = b > peak ? b : peak;
  }
  return peak / static_cast<double>(max_tokens);
}

}  // namespace cqkv
