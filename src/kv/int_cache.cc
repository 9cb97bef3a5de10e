#include "kv/int_cache.h"

#include <vector>

#include "util/error.h"

namespace cqkv {
namespace {

// Side parameter bits per group: fp16 scale + min (uniform) or fp16 absmax (NormalFloat).
int ParamBits(GroupCodec codec) { return codec == GroupCodec::kUniform ? 32 : 16; }

// Per (layer, KV head), K and V each in a row store of head_dim channels (TokenGroupRows or
// ChannelGroupRows, see quant_rows.h); the formats differ only in how they count bytes. Stores are
// per KV head, like the dense and CQ caches, so decode reads each head's rows contiguously.
template <typename Rows>
class RowStoreCache : public QuantKvCache {
 public:
  RowStoreCache(const std::string& spec, const KvShape& shape, const Rows& empty)
      : QuantKvCache(spec, shape),
        k_(static_cast<size_t>(shape.n_layers) * shape.n_kv_heads, empty),
        v_(k_.size(), empty) {}

  void Append(int layer, const KvBlock& block) override {
    CheckAppend(layer, block);
    const int hd = shape_.head_dim;
    for (int h = 0; h < shape_.n_kv_heads; ++h) {
      k_[shape_.HeadSlot(layer, h)].Append(block.k.ColRange(int64_t{h} * hd, hd));
      v_[shape_.HeadSlot(layer, h)].Append(block.v.ColRange(int64_t{h} * hd, hd));
    }
  }

  void DequantHead(int layer, KvPart part, int64_t t, int kvh, float* out) const override {
    Store(layer, part, kvh).Dequant(t, 0, shape_.head_dim, out);
  }

  int64_t tokens(int layer) const override { return k_[shape_.HeadSlot(layer, 0)].rows(); }

  void Clear() override {
    for (Rows& r : k_) r.Clear();
    for (Rows& r : v_) r.Clear();
  }

 private:
  const Rows& Store(int layer, KvPart part, int kvh) const {
    return part == KvPart::kKey ? k_[shape_.HeadSlot(layer, kvh)] : v_[shape_.HeadSlot(layer, kvh)];
  }
  void DequantRows(int layer, KvPart part, int64_t t0, int64_t n, int kvh,
                   float* out) const override {
    const int hd = shape_.head_dim;
    Store(layer, part, kvh).DequantBlock(t0, n, 0, hd, out, hd);
  }

  bool InPlaceRows(int layer, KvPart part, int kvh, IntRowsView* view) const override {
    if constexpr (requires(const Rows& r) { r.InPlaceView(view); }) {
      return Store(layer, part, kvh).InPlaceView(view);
    }
    return false;
  }

  std::vector<Rows> k_, v_;  // [shape_.HeadSlot(layer, kv_head)]
};

// Groups of G channels within each token (int<B>-token, nf<B>). Groups never straddle heads.
class TokenGroupCache final : public RowStoreCache<TokenGroupRows> {
 public:
  TokenGroupCache(const std::string& spec, const KvShape& shape, GroupCodec codec, int bits,
                  int group)
      : RowStoreCache(spec, shape, TokenGroupRows(codec, bits, shape.head_dim, group)),
        codec_(codec),
        bits_(bits),
        group_(group) {}

  // Every token costs the same: packed codes plus kv_dim/G parameter sets, for K and V.
  double BytesPerToken() const override {
    const TokenGroupRows probe(codec_, bits_, shape_.head_dim, group_);
    return 2.0 * shape_.n_layers * shape_.n_kv_heads * static_cast<double>(probe.RowBytes());
  }

  double BitsPerChannel() const override {
    return bits_ + static_cast<double>(ParamBits(codec_)) / group_;
  }

 private:
  GroupCodec codec_;
  int bits_, group_;
};

// Groups of G tokens within each channel (int<B>-channel), the last one requantised from an
// fp32 staging copy while it fills.
class ChannelGroupCache final : public RowStoreCache<ChannelGroupRows> {
 public:
  ChannelGroupCache(const std::string& spec, const KvShape& shape, int bits, int group)
      : RowStoreCache(spec, shape, ChannelGroupRows(bits, shape.head_dim, group)),
        bits_(bits),
        group_(group) {}

  // The peak over the sequence, staging included: with max_tokens a multiple of G it is reached
  // one token short of a full last group, where G-1 fp32 staged rows are held.
  double BytesPerToken() const override {
    const ChannelGroupRows probe(bits_, shape_.head_dim, group_);
    return PeakBytesPerToken(shape_.max_tokens, [&](int64_t n) {
      return 2 * int64_t{shape_.n_layers} * shape_.n_kv_heads * probe.BytesFor(n);
    });
  }

  double BitsPerChannel() const override { return bits_ + 32.0 / group_; }

 private:
  int bits_, group_;
};

}  // namespace

std::unique_ptr<QuantKvCache> MakeTokenGroupCache(const std::string& spec, const KvShape& shape,
                                                  GroupCodec codec, int bits, int group) {
  CQKV_CHECK(group > 0 && shape.head_dim % group == 0,
             "--kv '{}': group size g{} must be positive and divide head_dim {} (groups of "
             "channels stay within a head)",
             spec, group, shape.head_dim);
  return std::make_unique<TokenGroupCache>(spec, shape, codec, bits, group);
}

std::unique_ptr<QuantKvCache> MakeIntCache(const std::string& spec, const KvShape& shape) {
  const QuantSpec s = ParseQuantSpec(spec, "g");
  const size_t dash = s.head.find('-');
  CQKV_CHECK(s.head.starts_with("int") && dash != std::string::npos,
             "--kv '{}': expected int<B>-token[:g<G>] or int<B>-channel[:g<G>]", spec);
  const int bits = ParseBits(s, std::string_view(s.head).substr(3, dash - 3), {1, 2, 4, 8});
  const std::string layout = s.head.substr(dash + 1);
  if (layout == "token") {
    return MakeTokenGroupCache(spec, shape, GroupCodec::kUniform, bits,
                               static_cast<int>(s.Get('g', shape.head_dim)));
  }
  if (layout == "channel") {
    const int64_t group = s.Get('g', 128);
    CQKV_CHECK(group > 0, "--kv '{}': group size g{} must be positive", spec, group);
    return std::make_unique<ChannelGroupCache>(spec, shape, bits, static_cast<int>(group));
  }
  Fail("--kv '{}': unknown layout '{}' (int<B>-token or int<B>-channel)", spec, layout);
}

}  // namespace cqkv
