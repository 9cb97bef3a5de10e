// Growing row stores over one vector-backed region, for tests of the row codecs
// (kv/quant_rows.h) on their own: what the int, nf and kivi caches do over page regions, minus
// the paging. TestChannelRows keeps the partial last group's rows and re-encodes the group once
// per Append, as ChannelGroupCache does with its staging.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "kv/quant_rows.h"
#include "util/tensor.h"

namespace cqkv::testing {

// What both stores share: a codec, its region over one vector, and reads through the codec.
template <typename Codec>
class TestRows {
 public:
  void Dequant(int64_t t, int c0, int n, float* out) const {
    codec_.Dequant(region(), t, c0, n, out);
  }
  void DequantBlock(int64_t t0, int64_t rows, int c0, int n, float* out, int64_t ld) const {
    codec_.DequantBlock(region(), t0, rows, c0, n, out, ld);
  }
  uint32_t Code(int64_t t, int c) const { return codec_.Code(region(), t, c); }
  int64_t rows() const { return rows_; }

 protected:
  // Room for `capacity` rows.
  TestRows(Codec codec, int64_t capacity)
      : codec_(std::move(codec)),
        layout_(codec_.Layout(capacity)),
        mem_(static_cast<size_t>(layout_.bytes), 0) {}
  ConstRowsRegion region() const { return layout_.At(static_cast<const uint8_t*>(mem_.data())); }

  Codec codec_;
  RowsLayout layout_;
  std::vector<uint8_t> mem_;
  int64_t rows_ = 0;
};

class TestTokenRows : public TestRows<TokenGroupCodec> {
 public:
  TestTokenRows(GroupCodec codec, int bits, int width, int group, int64_t capacity)
      : TestRows(TokenGroupCodec(codec, bits, width, group), capacity) {}

  void Append(const float* row) { codec_.Encode(row, layout_.At(mem_.data()), rows_++); }
};

class TestChannelRows : public TestRows<ChannelGroupCodec> {
 public:
  TestChannelRows(int bits, int width, int group, int64_t capacity)
      : TestRows(ChannelGroupCodec(bits, width, group), capacity) {}

  void Append(ConstMat rows) {
    const int w = codec_.width(), g = codec_.group();
    for (int64_t i = 0; i < rows.rows; ++i) {
      staging_.insert(staging_.end(), rows.Row(i), rows.Row(i) + w);
      if (++rows_ % g == 0) {  // the group is full: its codes are final
        codec_.EncodeGroup(staging_.data(), g, w, layout_.At(mem_.data()), rows_ - g);
        staging_.clear();
      }
    }
    if (!staging_.empty()) {
      const int64_t m = static_cast<int64_t>(staging_.size()) / w;
      codec_.EncodeGroup(staging_.data(), m, w, layout_.At(mem_.data()), rows_ - m);
    }
  }

 private:
  std::vector<float> staging_;  // rows of the partial last group
};

}  // namespace cqkv::testing
