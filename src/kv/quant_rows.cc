#include "kv/quant_rows.h"

#include <algorithm>
#include <array>
#include <cassert>
#include <cstring>
#include <span>

#include "kv/group_quant.h"
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

}  // namespace

TokenGroupRows::TokenGroupRows(GroupCodec codec, int bits, int width, int group)
    : codec_(codec),
      bits_(bits),
      width_(width),
      group_(group),
      code_bytes_(PackedBytes(width, bits)) {
  assert(group > 0 && width % group == 0);
}

void TokenGroupRows::Append(const float* row) {
  const int n_groups = width_ / group_;
  const int ppg = params_per_group();
  codes_.resize(static_cast<size_t>((rows_ + 1) * code_bytes_ + kCodeSlack), 0);
  params_.resize(static_cast<size_t>((rows_ + 1) * n_groups * ppg));
  uint8_t* codes = codes_.data() + rows_ * code_bytes_;
  uint16_t* params = params_.data() + rows_ * n_groups * ppg;
  for (int g = 0; g < n_groups; ++g) {
    const float* x = row + g * group_;
    const int64_t c0 = int64_t{g} * group_;
    if (codec_ == GroupCodec::kUniform) {
      const UniformGroup q = UniformGroup::Fit(x, group_, 1, bits_);
      params[2 * g] = q.scale_half();
      params[2 * g + 1] = q.min_half();
      for (int i = 0; i < group_; ++i) PutCode(codes, c0 + i, bits_, q.Encode(x[i]));
    } else {
      const NormalFloatGroup q = NormalFloatGroup::Fit(x, group_, 1, bits_);
      params[g] = q.absmax_half();
      for (int i = 0; i < group_; ++i) PutCode(codes, c0 + i, bits_, q.Encode(x[i]));
    }
  }
  ++rows_;
}

void TokenGroupRows::Dequant(int64_t t, int c0, int n, float* out) const {
  assert(t >= 0 && t < rows_ && c0 % group_ == 0 && n % group_ == 0 && c0 + n <= width_);
  const int ppg = params_per_group();
  const uint8_t* codes = codes_.data() + t * code_bytes_;
  const uint16_t* params = params_.data() + t * (width_ / group_) * ppg;
  for (int g = c0 / group_; g < (c0 + n) / group_; ++g) {
    const int64_t base = int64_t{g} * group_;
    float* o = out + (base - c0);
    if (codec_ == GroupCodec::kUniform) {
      const UniformGroup q = UniformGroup::FromHalf(params[2 * g], params[2 * g + 1], bits_);
      for (int i = 0; i < group_; ++i) o[i] = q.Decode(GetCode(codes, base + i, bits_));
    } else {
      const NormalFloatGroup q = NormalFloatGroup::FromHalf(params[g], bits_);
      for (int i = 0; i < group_; ++i) o[i] = q.Decode(GetCode(codes, base + i, bits_));
    }
  }
}

void TokenGroupRows::DequantBlock(int64_t t0, int64_t rows, int c0, int n, float* out,
                                  int64_t ld) const {
  assert(t0 >= 0 && t0 + rows <= rows_ && c0 % group_ == 0 && n % group_ == 0 && c0 + n <= width_ &&
         n <= kMaxBlockWidth);
  const int ppg = params_per_group();
  const int n_groups = width_ / group_;
  const float* levels = codec_ == GroupCodec::kUniform ? nullptr : NormalFloatLevels(bits_).data();
  uint8_t code[kMaxBlockWidth];
  if (codec_ == GroupCodec::kNormalFloat && bits_ == 4 && group_ % 2 == 0) {
    // nf4 (even groups, so bytes never straddle them): a byte holds two codes, so one 8-byte load
    // from a 256-entry table of level pairs replaces two unpacks and two per-value table lookups
    // (which the compiler turns into slow gathers). The products are the ones
    // NormalFloatGroup::Decode forms.
    const Nf4PairTable& pairs = Nf4Pairs();
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t t = t0 + r;
      const uint8_t* bytes = codes_.data() + t * code_bytes_ + c0 / 2;
      const uint16_t* params = params_.data() + t * n_groups;
      float* o = out + r * ld;
      for (int g = c0 / group_; g < (c0 + n) / group_; ++g) {
        const int base = g * group_ - c0;
        float level[kMaxBlockWidth];  // the group's unscaled levels, in channel order
        for (int i = 0; i < group_ / 2; ++i) {
          std::memcpy(level + 2 * i, pairs[bytes[base / 2 + i]].data(), 2 * sizeof(float));
        }
        const float absmax = F16ToF32(params[g]);
        for (int i = 0; i < group_; ++i) o[base + i] = level[i] * absmax;
      }
    }
    return;
  }
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t t = t0 + r;
    UnpackCodes(codes_.data() + t * code_bytes_, c0, n, bits_, code);
    const uint16_t* params = params_.data() + t * n_groups * ppg;
    float* o = out + r * ld;
    for (int g = c0 / group_; g < (c0 + n) / group_; ++g) {
      const int base = g * group_ - c0;
      if (levels == nullptr) {
        // The expression of UniformGroup::Decode, so values match Dequant exactly.
        const float scale = F16ToF32(params[2 * g]), min = F16ToF32(params[2 * g + 1]);
        for (int i = 0; i < group_; ++i) {
          o[base + i] = min + static_cast<float>(code[base + i]) * scale;
        }
      } else {
        const float absmax = F16ToF32(params[g]);
        for (int i = 0; i < group_; ++i) o[base + i] = levels[code[base + i]] * absmax;
      }
    }
  }
}

uint32_t TokenGroupRows::Code(int64_t t, int c) const {
  return GetCode(codes_.data() + t * code_bytes_, c, bits_);
}

bool TokenGroupRows::InPlaceView(IntRowsView* view) const {
  if (codec_ != GroupCodec::kUniform || rows_ == 0) return false;
  *view =
      IntRowsView{codes_.data(), params_.data(), code_bytes_, 2 * (width_ / group_), bits_, group_};
  return IntAttendSupports(*view);
}

void TokenGroupRows::Clear() {
  codes_.clear();
  params_.clear();
  rows_ = 0;
}

int64_t TokenGroupRows::RowBytes() const {
  return code_bytes_ + int64_t{width_ / group_} * params_per_group() * 2;
}

ChannelGroupRows::ChannelGroupRows(int bits, int width, int group)
    : bits_(bits), width_(width), group_(group), code_bytes_(PackedBytes(width, bits)) {
  assert(group > 0);
}

void ChannelGroupRows::Append(ConstMat rows) {
  assert(rows.cols == width_);
  for (int64_t i = 0; i < rows.rows; ++i) {
    staging_.insert(staging_.end(), rows.Row(i), rows.Row(i) + width_);
    ++rows_;
    if (rows_ % group_ == 0) {
      QuantizePartialGroup();
      staging_.clear();  // the group is full: its codes are final
      staging_.shrink_to_fit();
    }
  }
  // Requantise once per call rather than per row: the rows of one block join together.
  if (!staging_.empty()) QuantizePartialGroup();
}

// Fits every channel of the group holding the last row on the staged rows and rewrites the
// group's codes. Called with staging_ holding exactly the group's rows so far.
void ChannelGroupRows::QuantizePartialGroup() {
  const int64_t g = (rows_ - 1) / group_;
  const int64_t first = g * group_;
  const int64_t m = rows_ - first;
  assert(static_cast<int64_t>(staging_.size()) == m * width_);
  codes_.resize(static_cast<size_t>(rows_ * code_bytes_ + kCodeSlack));
  std::fill(codes_.begin() + first * code_bytes_, codes_.end(), 0);  // PutCode ORs bits in
  params_.resize(static_cast<size_t>((g + 1) * width_ * 2));
  uint16_t* params = params_.data() + g * width_ * 2;
  for (int c = 0; c < width_; ++c) {
    const UniformGroup q = UniformGroup::Fit(staging_.data() + c, m, width_, bits_);
    params[2 * c] = q.scale_half();
    params[2 * c + 1] = q.min_half();
    for (int64_t r = 0; r < m; ++r) {
      PutCode(codes_.data() + (first + r) * code_bytes_, c, bits_,
              q.Encode(staging_[static_cast<size_t>(r * width_ + c)]));
    }
  }
}

bool ChannelGroupRows::InPlaceView(IntRowsView* view) const {
  if (rows_ == 0) return false;
  *view = IntRowsView{codes_.data(), params_.data(), code_bytes_, 2 * int64_t{width_},
                      bits_,         width_,         group_};
  return IntAttendSupports(*view);
}

void ChannelGroupRows::Dequant(int64_t t, int c0, int n, float* out) const {
  assert(t >= 0 && t < rows_ && c0 >= 0 && c0 + n <= width_);
  const uint8_t* codes = codes_.data() + t * code_bytes_;
  const uint16_t* params = params_.data() + (t / group_) * width_ * 2;
  for (int i = 0; i < n; ++i) {
    const int c = c0 + i;
    const UniformGroup q = UniformGroup::FromHalf(params[2 * c], params[2 * c + 1], bits_);
    out[i] = q.Decode(GetCode(codes, c, bits_));
  }
}

void ChannelGroupRows::DequantBlock(int64_t t0, int64_t rows, int c0, int n, float* out,
                                    int64_t ld) const {
  assert(t0 >= 0 && t0 + rows <= rows_ && c0 >= 0 && c0 + n <= width_ && n <= kMaxBlockWidth);
  float scale[kMaxBlockWidth], min[kMaxBlockWidth];
  uint8_t code[kMaxBlockWidth];
  int64_t loaded = -1;  // token group whose parameters scale/min hold
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t t = t0 + r;
    if (t / group_ != loaded) {
      loaded = t / group_;
      const uint16_t* params = params_.data() + loaded * width_ * 2;
      for (int i = 0; i < n; ++i) {
        scale[i] = F16ToF32(params[2 * (c0 + i)]);
        min[i] = F16ToF32(params[2 * (c0 + i) + 1]);
      }
    }
    UnpackCodes(codes_.data() + t * code_bytes_, c0, n, bits_, code);
    float* o = out + r * ld;
    // The expression of UniformGroup::Decode, so values match Dequant exactly.
    for (int i = 0; i < n; ++i) o[i] = min[i] + static_cast<float>(code[i]) * scale[i];
  }
}

uint32_t ChannelGroupRows::Code(int64_t t, int c) const {
  return GetCode(codes_.data() + t * code_bytes_, c, bits_);
}

void ChannelGroupRows::Clear() {
  codes_.clear();
  params_.clear();
  staging_.clear();
  rows_ = 0;
}

int64_t ChannelGroupRows::BytesFor(int64_t n) const {
  const int64_t groups = (n + group_ - 1) / group_;
  return n * code_bytes_ + groups * width_ * 2 * 2 + (n % group_) * width_ * 4;
}

}  // namespace cqkv
