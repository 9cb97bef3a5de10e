// Codecs of quantised K or V rows (one row = one token's channels of one KV head) over a region
// of memory the caller owns: real packed codes plus fp16 side parameters, per-token groups of
// channels or per-channel groups of tokens. Stateless: the caches decide where a run of rows
// lives (a region of a KV page, kv/page_layout.h) and what is staged; these only code rows.
// The int, nf and kivi caches are built from them.
#pragma once

#include <cstdint>

#include "kernels/attn_dense.h"
#include "util/tensor.h"

namespace cqkv {

// How one group of values becomes codes.
enum class GroupCodec {
  kUniform,      // asymmetric uniform: fp16 scale + fp16 min per group
  kNormalFloat,  // NormalFloat levels: fp16 absmax per group
};

// Zero bytes a region keeps past its last row's codes, so the vector loads of the in-register
// decode kernel (IntAttend) stay in bounds.
constexpr int64_t kCodeSlack = 64;

// A run of quantised rows: row i's packed codes at codes + i * code_bytes; the fp16 parameters
// of row i (token groups) or of the token group holding row i (channel groups) at
// params + (i or i / group) * params_per_row.
struct RowsRegion {
  uint8_t* codes;
  uint16_t* params;
};
struct ConstRowsRegion {
  const uint8_t* codes;
  const uint16_t* params;
  ConstRowsRegion(const uint8_t* c, const uint16_t* p) : codes(c), params(p) {}
  ConstRowsRegion(RowsRegion r) : codes(r.codes), params(r.params) {}  // NOLINT: widening
};

// Bytes of a region holding up to `rows` rows: the codes plus kCodeSlack, then the parameters,
// each part a multiple of 64 bytes (so regions placed at 64-byte offsets keep both aligned).
struct RowsLayout {
  int64_t params_offset = 0;
  int64_t bytes = 0;

  RowsRegion At(uint8_t* base) const {
    return {base, reinterpret_cast<uint16_t*>(base + params_offset)};
  }
  ConstRowsRegion At(const uint8_t* base) const {
    return {base, reinterpret_cast<const uint16_t*>(base + params_offset)};
  }
};

// Rows quantised one at a time: each row splits into groups of `group` contiguous channels
// with their own parameters. A row never changes once written.
class TokenGroupCodec {
 public:
  // group must divide width.
  TokenGroupCodec(GroupCodec codec, int bits, int width, int group);

  RowsLayout Layout(int64_t rows) const;
  // Quantises `row` (width values) into row i of r, whose code bytes must be zero.
  void Encode(const float* row, RowsRegion r, int64_t i) const;
  // Dequantises channels [c0, c0 + n) of row i into out; c0 and n are multiples of group.
  void Dequant(ConstRowsRegion r, int64_t i, int c0, int n, float* out) const;
  // Rows [i0, i0 + rows) of channels [c0, c0 + n) into out + k * ld (row k), the values Dequant
  // gives; decodes codes a byte at a time where the packing allows (the decode hot path).
  void DequantBlock(ConstRowsRegion r, int64_t i0, int64_t rows, int c0, int n, float* out,
                    int64_t ld) const;
  // Code of channel c of row i, for tests.
  uint32_t Code(ConstRowsRegion r, int64_t i, int c) const;
  // Rows from i0 on as the in-register decode kernel reads them (kernels/attn_dense.h,
  // IntAttend): uniform codec and a shape IntAttendSupports. False otherwise.
  bool View(ConstRowsRegion r, int64_t i0, IntRowsView* view) const;

  // Bytes one row occupies: packed codes plus side parameters.
  int64_t RowBytes() const;

 private:
  int params_per_group() const { return codec_ == GroupCodec::kUniform ? 2 : 1; }
  int64_t params_per_row() const { return int64_t{width_ / group_} * params_per_group(); }

  GroupCodec codec_;
  int bits_, width_, group_;
  int64_t code_bytes_;  // PackedBytes(width, bits)
};

// Rows quantised per channel over groups of `group` consecutive rows (tokens) with uniform
// asymmetric codes, one fp16 (scale, min) pair per channel per group, the pairs of a group
// interleaved by channel. Regions start on a group's first row. The last group of a sequence may
// be partial: its owner keeps the group's rows (fp32 staging) and re-encodes the whole group
// (new scale/min, new codes) whenever rows join, so no row is ever read back at full precision;
// a full group's codes never change again.
class ChannelGroupCodec {
 public:
  ChannelGroupCodec(int bits, int width, int group);

  RowsLayout Layout(int64_t rows) const;
  // Fits every channel on the m (1..group) rows of width values at rows + k * ld and writes them
  // as rows [first, first + m) of r, first a multiple of group, with their group's parameters.
  void EncodeGroup(const float* rows, int64_t m, int64_t ld, RowsRegion r, int64_t first) const;
  void Dequant(ConstRowsRegion r, int64_t i, int c0, int n, float* out) const;
  // As TokenGroupCodec::DequantBlock; each token group's scale/min are decoded once per block.
  void DequantBlock(ConstRowsRegion r, int64_t i0, int64_t rows, int c0, int n, float* out,
                    int64_t ld) const;
  uint32_t Code(ConstRowsRegion r, int64_t i, int c) const;
  // Rows from i0 (a multiple of group) on as IntAttend reads them, when IntAttendSupports their
  // shape. False otherwise.
  bool View(ConstRowsRegion r, int64_t i0, IntRowsView* view) const;

  int group() const { return group_; }
  int width() const { return width_; }
  // Bytes a sequence of n rows holds: codes, the parameters of ceil(n/group) groups, and the
  // fp32 staging copy of the n % group rows of a partial group.
  int64_t BytesFor(int64_t n) const;

 private:
  int bits_, width_, group_;
  int64_t code_bytes_;
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
