#include "kv/quant_rows.h"

#include <algorithm>
#include <array>
#include <cassert>
#include <cstring>
#include <span>

#include "kv/group_quant.h"
#include "kv/page_layout.h"
#include "util/fp16.h"

namespace cqkv {
namespace {

template <int kBits>
void UnpackWholeBytes(const uint8_t* p, int n, uint8_t* out) {
  constexpr int kPerByte = 8 / kBits;
  constexpr uint32_t kMask = (1u << kBits) - 1u;
  for (int b = 0; b < n / kPerByte; ++b) {
    for (int j = 0; j < kPerByte; ++j) {
      out[b * kPerByte + j] = static_cast<uint8_t>((p[b] >> (j * kBits)) & kMask);
    }
  }
}

// Codes [i0, i0 + n) of a packed string into out. Whole-byte packings (bits 1, 2, 4, 8 starting
// and ending on a byte) unpack with compile-time shifts the compiler vectorises; the rest go
// code by code. This loop is most of the decode time, hence the specialisations.
void UnpackCodes(const uint8_t* codes, int64_t i0, int n, int bits, uint8_t* out) {
  if (8 % bits == 0 && (i0 * bits) % 8 == 0 && n * bits % 8 == 0) {
    const uint8_t* p = codes + i0 * bits / 8;
    switch (bits) {
      case 1:
        return UnpackWholeBytes<1>(p, n, out);
      case 2:
        return UnpackWholeBytes<2>(p, n, out);
      case 4:
        return UnpackWholeBytes<4>(p, n, out);
      case 8:
        return UnpackWholeBytes<8>(p, n, out);
    }
  }
  for (int i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(GetCode(codes, i0 + i, bits));
}

// NF4 levels of both codes of every byte: entry b = {level[b & 15], level[b >> 4]}.
using Nf4PairTable = std::array<std::array<float, 2>, 256>;
const Nf4PairTable& Nf4Pairs() {
  static const Nf4PairTable table = [] {
    const std::span<const float> levels = NormalFloatLevels(4);
    Nf4PairTable t;
    for (int b = 0; b < 256; ++b) t[b] = {levels[b & 15], levels[b >> 4]};
    return t;
  }();
  return table;
}

// Largest width a block decode handles (QuantKvCache::kMaxHeadDim).
constexpr int kMaxBlockWidth = 512;

RowsLayout MakeLayout(int64_t rows, int64_t code_bytes, int64_t param_rows,
                      int64_t params_per_row) {
  RowsLayout l;
  l.params_offset = AlignUp64(rows * code_bytes + kCodeSlack);
  l.bytes = l.params_offset + AlignUp64(param_rows * params_per_row * 2);
  return l;
}

}  // namespace

TokenGroupCodec::TokenGroupCodec(GroupCodec codec, int bits, int width, int group)
    : codec_(codec),
      bits_(bits),
      width_(width),
      group_(group),
      code_bytes_(PackedBytes(width, bits)) {
  assert(group > 0 && width % group == 0);
}

RowsLayout TokenGroupCodec::Layout(int64_t rows) const {
  return MakeLayout(rows, code_bytes_, rows, params_per_row());
}

void TokenGroupCodec::Encode(const float* row, RowsRegion r, int64_t i) const {
  const int n_groups = width_ / group_;
  uint8_t* codes = r.codes + i * code_bytes_;
  uint16_t* params = r.params + i * params_per_row();
  for (int g = 0; g < n_groups; ++g) {
    const float* x = row + g * group_;
    const int64_t c0 = int64_t{g} * group_;
    if (codec_ == GroupCodec::kUniform) {
      const UniformGroup q = UniformGroup::Fit(x, group_, 1, bits_);
      params[2 * g] = q.scale_half();
      params[2 * g + 1] = q.min_half();
      for (int k = 0; k < group_; ++k) PutCode(codes, c0 + k, bits_, q.Encode(x[k]));
    } else {
      const NormalFloatGroup q = NormalFloatGroup::Fit(x, group_, 1, bits_);
      params[g] = q.absmax_half();
      for (int k = 0; k < group_; ++k) PutCode(codes, c0 + k, bits_, q.Encode(x[k]));
    }
  }
}

void TokenGroupCodec::Dequant(ConstRowsRegion r, int64_t i, int c0, int n, float* out) const {
  assert(i >= 0 && c0 % group_ == 0 && n % group_ == 0 && c0 + n <= width_);
  const uint8_t* codes = r.codes + i * code_bytes_;
  const uint16_t* params = r.params + i * params_per_row();
  for (int g = c0 / group_; g < (c0 + n) / group_; ++g) {
    const int64_t base = int64_t{g} * group_;
    float* o = out + (base - c0);
    if (codec_ == GroupCodec::kUniform) {
      const UniformGroup q = UniformGroup::FromHalf(params[2 * g], params[2 * g + 1], bits_);
      for (int k = 0; k < group_; ++k) o[k] = q.Decode(GetCode(codes, base + k, bits_));
    } else {
      const NormalFloatGroup q = NormalFloatGroup::FromHalf(params[g], bits_);
      for (int k = 0; k < group_; ++k) o[k] = q.Decode(GetCode(codes, base + k, bits_));
    }
  }
}

void TokenGroupCodec::DequantBlock(ConstRowsRegion r, int64_t i0, int64_t rows, int c0, int n,
                                   float* out, int64_t ld) const {
  assert(i0 >= 0 && c0 % group_ == 0 && n % group_ == 0 && c0 + n <= width_ && n <= kMaxBlockWidth);
  const int64_t ppr = params_per_row();
  const float* levels = codec_ == GroupCodec::kUniform ? nullptr : NormalFloatLevels(bits_).data();
  uint8_t code[kMaxBlockWidth];
  if (codec_ == GroupCodec::kNormalFloat && bits_ == 4 && group_ % 2 == 0) {
    // nf4 (even groups, so bytes never straddle them): a byte holds two codes, so one 8-byte load
    // from a 256-entry table of level pairs replaces two unpacks and two per-value table lookups
    // (which the compiler turns into slow gathers). The products are the ones
    // NormalFloatGroup::Decode forms.
    const Nf4PairTable& pairs = Nf4Pairs();
    for (int64_t k = 0; k < rows; ++k) {
      const int64_t i = i0 + k;
      const uint8_t* bytes = r.codes + i * code_bytes_ + c0 / 2;
      const uint16_t* params = r.params + i * ppr;
      float* o = out + k * ld;
      for (int g = c0 / group_; g < (c0 + n) / group_; ++g) {
        const int base = g * group_ - c0;
        float level[kMaxBlockWidth];  // the group's unscaled levels, in channel order
        for (int j = 0; j < group_ / 2; ++j) {
          std::memcpy(level + 2 * j, pairs[bytes[base / 2 + j]].data(), 2 * sizeof(float));
        }
        const float absmax = F16ToF32(params[g]);
        for (int j = 0; j < group_; ++j) o[base + j] = level[j] * absmax;
      }
    }
    return;
  }
  for (int64_t k = 0; k < rows; ++k) {
    const int64_t i = i0 + k;
    UnpackCodes(r.codes + i * code_bytes_, c0, n, bits_, code);
    const uint16_t* params = r.params + i * ppr;
    float* o = out + k * ld;
    for (int g = c0 / group_; g < (c0 + n) / group_; ++g) {
      const int base = g * group_ - c0;
      if (levels == nullptr) {
        // The expression of UniformGroup::Decode, so values match Dequant exactly.
        const float scale = F16ToF32(params[2 * g]), min = F16ToF32(params[2 * g + 1]);
        for (int j = 0; j < group_; ++j) {
          o[base + j] = min + static_cast<float>(code[base + j]) * scale;
        }
      } else {
        const float absmax = F16ToF32(params[g]);
        for (int j = 0; j < group_; ++j) o[base + j] = levels[code[base + j]] * absmax;
      }
    }
  }
}

uint32_t TokenGroupCodec::Code(ConstRowsRegion r, int64_t i, int c) const {
  return GetCode(r.codes + i * code_bytes_, c, bits_);
}

bool TokenGroupCodec::View(ConstRowsRegion r, int64_t i0, IntRowsView* view) const {
  if (codec_ != GroupCodec::kUniform) return false;
  *view = IntRowsView{r.codes + i0 * code_bytes_,
                      r.params + i0 * params_per_row(),
                      code_bytes_,
                      params_per_row(),
                      bits_,
                      group_};
  return IntAttendSupports(*view);
}

int64_t TokenGroupCodec::RowBytes() const { return code_bytes_ + params_per_row() * 2; }

ChannelGroupCodec::ChannelGroupCodec(int bits, int width, int group)
    : bits_(bits), width_(width), group_(group), code_bytes_(PackedBytes(width, bits)) {
  assert(group > 0);
}

RowsLayout ChannelGroupCodec::Layout(int64_t rows) const {
  return MakeLayout(rows, code_bytes_, (rows + group_ - 1) / group_, 2 * int64_t{width_});
}

void ChannelGroupCodec::EncodeGroup(const float* rows, int64_t m, int64_t ld, RowsRegion r,
                                    int64_t first) const {
  assert(first % group_ == 0 && m >= 1 && m <= group_);
  uint8_t* codes = r.codes + first * code_bytes_;
  std::memset(codes, 0, static_cast<size_t>(m * code_bytes_));  // PutCode ORs bits in
  uint16_t* params = r.params + first / group_ * 2 * int64_t{width_};
  for (int c = 0; c < width_; ++c) {
    const UniformGroup q = UniformGroup::Fit(rows + c, m, ld, bits_);
    params[2 * c] = q.scale_half();
    params[2 * c + 1] = q.min_half();
    for (int64_t k = 0; k < m; ++k) {
      PutCode(codes + k * code_bytes_, c, bits_, q.Encode(rows[k * ld + c]));
    }
  }
}

bool ChannelGroupCodec::View(ConstRowsRegion r, int64_t i0, IntRowsView* view) const {
  if (i0 % group_ != 0) return false;
  const int64_t ppr = 2 * int64_t{width_};
  *view = IntRowsView{r.codes + i0 * code_bytes_,
                      r.params + i0 / group_ * ppr,
                      code_bytes_,
                      ppr,
                      bits_,
                      width_,
                      group_};
  return IntAttendSupports(*view);
}

void ChannelGroupCodec::Dequant(ConstRowsRegion r, int64_t i, int c0, int n, float* out) const {
  assert(i >= 0 && c0 >= 0 && c0 + n <= width_);
  const uint8_t* codes = r.codes + i * code_bytes_;
  const uint16_t* params = r.params + (i / group_) * width_ * 2;
  for (int k = 0; k < n; ++k) {
    const int c = c0 + k;
    const UniformGroup q = UniformGroup::FromHalf(params[2 * c], params[2 * c + 1], bits_);
    out[k] = q.Decode(GetCode(codes, c, bits_));
  }
}

void ChannelGroupCodec::DequantBlock(ConstRowsRegion r, int64_t i0, int64_t rows, int c0, int n,
                                     float* out, int64_t ld) const {
  assert(i0 >= 0 && c0 >= 0 && c0 + n <= width_ && n <= kMaxBlockWidth);
  float scale[kMaxBlockWidth], min[kMaxBlockWidth];
  uint8_t code[kMaxBlockWidth];
  int64_t loaded = -1;  // token group whose parameters scale/min hold
  for (int64_t k = 0; k < rows; ++k) {
    const int64_t i = i0 + k;
    if (i / group_ != loaded) {
      loaded = i / group_;
      const uint16_t* params = r.params + loaded * width_ * 2;
      for (int j = 0; j < n; ++j) {
        scale[j] = F16ToF32(params[2 * (c0 + j)]);
        min[j] = F16ToF32(params[2 * (c0 + j) + 1]);
      }
    }
    UnpackCodes(r.codes + i * code_bytes_, c0, n, bits_, code);
    float* o = out + k * ld;
    // The expression of UniformGroup::Decode, so values match Dequant exactly.
    for (int j = 0; j < n; ++j) o[j] = min[j] + static_cast<float>(code[j]) * scale[j];
  }
}

uint32_t ChannelGroupCodec::Code(ConstRowsRegion r, int64_t i, int c) const {
  return GetCode(r.codes + i * code_bytes_, c, bits_);
}

int64_t ChannelGroupCodec::BytesFor(int64_t n) const {
  const int64_t groups = (n + group_ - 1) / group_;
  return n * code_bytes_ + groups * width_ * 2 * 2 + (n % group_) * width_ * 4;
}

}  // namespace cqkv
