#include "kv/int_cache.h"

#include <algorithm>
#include <memory>
#include <vector>

#include "kernels/hadamard.h"
#include "kv/page_layout.h"
#include "util/error.h"

namespace cqkv {
namespace {

// Side parameter bits per group: fp16 scale + min (uniform) or fp16 absmax (NormalFloat).
int ParamBits(GroupCodec codec) { return codec == GroupCodec::kUniform ? 32 : 16; }

// Paged rows of a Codec (TokenGroupCodec or ChannelGroupCodec, quant_rows.h): a page holds one
// region per (layer, K/V, KV head), Codec::Layout(page_tokens) bytes, with that head's rows of
// the page (codes, slack for IntAttend, then parameters), so decode reads each head's rows
// contiguously within a page, like the dense and CQ caches. Subclasses write rows (Append) and
// count bytes.
template <typename Codec>
class PagedRowsCache : public QuantKvCache {
 public:
  PagedRowsCache(const std::string& spec, const KvShape& shape, const Codec& codec,
                 std::shared_ptr<PagePool> pool, std::shared_ptr<const HeadRotation> rotation)
      : QuantKvCache(spec, shape, std::move(pool), std::move(rotation)),
        codec_(codec),
        layout_(codec.Layout(shape.page_tokens)),
        regions_(PageRegions::For(shape, layout_.bytes)),
        n_(shape.n_layers, 0) {}

  int64_t PageBytes() const override { return regions_.page_bytes(); }

  void DequantHead(int layer, KvPart part, int64_t t, int kvh, float* out) const override {
    codec_.Dequant(Region(layer, part, kvh, t), t % shape_.page_tokens, 0, shape_.head_dim, out);
  }

  int64_t tokens(int layer) const override { return n_[layer]; }

  void Clear() override {
    ReleasePages();
    std::fill(n_.begin(), n_.end(), 0);
  }

 protected:
  // The region of (layer, part, kvh) in the page holding token t (held).
  RowsRegion Region(int layer, KvPart part, int kvh, int64_t t) const {
    return layout_.At(PageData(t / shape_.page_tokens) +
                      regions_.Offset(layer, static_cast<int>(part), kvh));
  }

  Codec codec_;  // one KV head's rows: width head_dim
  RowsLayout layout_;
  PageRegions regions_;
  std::vector<int64_t> n_;  // tokens per layer

 private:
  void DequantRows(int layer, KvPart part, int64_t t0, int64_t n, int kvh,
                   float* out) const override {
    const int hd = shape_.head_dim;
    codec_.DequantBlock(Region(layer, part, kvh, t0), t0 % shape_.page_tokens, n, 0, hd, out, hd);
  }

  bool InPlaceRows(int layer, KvPart part, int kvh, int64_t t0, IntRowsView* view) const override {
    return codec_.View(Region(layer, part, kvh, t0), t0 % shape_.page_tokens, view);
  }
};

// Groups of G channels within each token (int<B>-token, nf<B>). Groups never straddle heads.
class TokenGroupCache final : public PagedRowsCache<TokenGroupCodec> {
 public:
  TokenGroupCache(const std::string& spec, const KvShape& shape, GroupCodec codec, int bits,
                  int group, std::shared_ptr<PagePool> pool,
                  std::shared_ptr<const HeadRotation> rotation)
      : PagedRowsCache(spec, shape, TokenGroupCodec(codec, bits, shape.head_dim, group),
                       std::move(pool), std::move(rotation)),
        codec_kind_(codec),
        bits_(bits),
        group_(group) {}

  std::unique_ptr<KvCache> NewSibling(std::shared_ptr<PagePool> pool) const override {
    return std::make_unique<TokenGroupCache>(spec_, shape_, codec_kind_, bits_, group_,
                                             std::move(pool), rotation_);
  }

  void Append(int layer, const KvBlock& block) override {
    CheckAppend(layer, block);
    const int hd = shape_.head_dim;
    std::vector<float> k(static_cast<size_t>(shape_.kv_dim())), v(k.size());
    for (int64_t i = 0; i < block.k.rows; ++i) {
      const int64_t t = n_[layer] + i, row = t % shape_.page_tokens;
      RotateRows(layer, block.k.Row(i), k.data());
      RotateRows(layer, block.v.Row(i), v.data());
      for (int h = 0; h < shape_.n_kv_heads; ++h) {
        codec_.Encode(k.data() + int64_t{h} * hd, Region(layer, KvPart::kKey, h, t), row);
        codec_.Encode(v.data() + int64_t{h} * hd, Region(layer, KvPart::kValue, h, t), row);
      }
    }
    n_[layer] += block.k.rows;
  }

  // Every token costs the same: packed codes plus kv_dim/G parameter sets, for K and V.
  double BytesPerToken() const override {
    return 2.0 * shape_.n_layers * shape_.n_kv_heads * static_cast<double>(codec_.RowBytes());
  }

  double BitsPerChannel() const override {
    return bits_ + static_cast<double>(ParamBits(codec_kind_)) / group_;
  }

 private:
  GroupCodec codec_kind_;
  int bits_, group_;
};

// Groups of G tokens within each channel (int<B>-channel). G divides page_tokens, so a group's
// codes and parameters live in the page of its tokens. The last, partial group of each
// (layer, K/V, KV head) is also kept in fp32 staging (per sequence, outside pages: FixedBytes)
// and re-encoded from it whenever rows join, once per Append; a full group is final.
class ChannelGroupCache final : public PagedRowsCache<ChannelGroupCodec> {
 public:
  ChannelGroupCache(const std::string& spec, const KvShape& shape, int bits, int group,
                    std::shared_ptr<PagePool> pool, std::shared_ptr<const HeadRotation> rotation)
      : PagedRowsCache(spec, shape, ChannelGroupCodec(bits, shape.head_dim, group), std::move(pool),
                       std::move(rotation)),
        bits_(bits),
        group_(group),
        staged_rows_(std::min(group, std::max(shape.max_tokens, 1))) {}

  std::unique_ptr<KvCache> NewSibling(std::shared_ptr<PagePool> pool) const override {
    return std::make_unique<ChannelGroupCache>(spec_, shape_, bits_, group_, std::move(pool),
                                               rotation_);
  }

  // fp32 staging of one group's rows per (layer, K/V, KV head), allocated at the first Append.
  int64_t FixedBytes() const override {
    return 2 * int64_t{shape_.n_layers} * shape_.kv_dim() * staged_rows_ * 4;
  }

  void Append(int layer, const KvBlock& block) override {
    CheckAppend(layer, block);
    const int hd = shape_.head_dim;
    if (staging_.empty()) staging_.resize(static_cast<size_t>(FixedBytes() / 4));
    const int64_t n0 = n_[layer], n1 = n0 + block.k.rows;
    for (int h = 0; h < shape_.n_kv_heads; ++h) {
      for (KvPart part : {KvPart::kKey, KvPart::kValue}) {
        const ConstMat rows = (part == KvPart::kKey ? block.k : block.v).ColRange(h * hd, hd);
        float* stage =
            staging_.data() + regions_.Index(layer, static_cast<int>(part), h) * staged_rows_ * hd;
        for (int64_t t = n0; t < n1; ++t) {
          float* staged = stage + (t % group_) * hd;
          std::copy_n(rows.Row(t - n0), hd, staged);
          if (rotation_) rotation_->Forward(layer, staged, 1);
          if ((t + 1) % group_ == 0) Encode(layer, part, h, stage, group_, t + 1 - group_);
        }
        // Requantise once per call rather than per row: the rows of one block join together.
        if (n1 > n0 && n1 % group_ != 0)
          Encode(layer, part, h, stage, n1 % group_, n1 / group_ * group_);
      }
    }
    n_[layer] = n1;
  }

  // The peak over the sequence, staging included: with max_tokens a multiple of G it is reached
  // one token short of a full last group, where G-1 fp32 staged rows are held.
  double BytesPerToken() const override {
    return PeakBytesPerToken(shape_.max_tokens, [&](int64_t n) {
      return 2 * int64_t{shape_.n_layers} * shape_.n_kv_heads * codec_.BytesFor(n);
    });
  }

  double BitsPerChannel() const override { return bits_ + 32.0 / group_; }

 private:
  // Encodes the m staged rows of the group starting at token `first` into its page.
  void Encode(int layer, KvPart part, int h, const float* stage, int64_t m, int64_t first) {
    codec_.EncodeGroup(stage, m, shape_.head_dim, Region(layer, part, h, first),
                       first % shape_.page_tokens);
  }

  int bits_, group_;
  int64_t staged_rows_;         // min(G, max_tokens)
  std::vector<float> staging_;  // per (layer, part, KV head), PageRegions order: (G, head_dim)
};

// The per-token cache, rotated or not; group must divide head_dim (checked, naming spec).
std::unique_ptr<QuantKvCache> MakeTokenGroups(const std::string& spec, const KvShape& shape,
                                              GroupCodec codec, int bits, int group,
                                              std::shared_ptr<const HeadRotation> rotation) {
  CQKV_CHECK(group > 0 && shape.head_dim % group == 0,
             "KV format '{}': group size g{} must be positive and divide head_dim {} (groups of "
             "channels stay within a head)",
             spec, group, shape.head_dim);
  return std::make_unique<TokenGroupCache>(spec, shape, codec, bits, group, nullptr,
                                           std::move(rotation));
}

}  // namespace

std::unique_ptr<QuantKvCache> MakeTokenGroupCache(const std::string& spec, const KvShape& shape,
                                                  GroupCodec codec, int bits, int group) {
  return MakeTokenGroups(spec, shape, codec, bits, group, nullptr);
}

std::unique_ptr<QuantKvCache> MakeIntCache(const KvSpec& spec, const KvShape& shape) {
  // `:hadamard`: llama.cpp's plain normalised Walsh-Hadamard per head, no random signs.
  std::shared_ptr<const HeadRotation> rotation;
  if (spec.hadamard) {
    CheckHadamardSize(shape.head_dim, fmt::format("KV format '{}'", spec.text));
    rotation = std::make_shared<HeadRotation>(shape.n_layers, shape.head_dim, /*seed=*/0);
  }
  if (spec.family == KvFamily::kIntToken) {
    return MakeTokenGroups(spec.text, shape, GroupCodec::kUniform, spec.bits,
                           spec.group > 0 ? spec.group : shape.head_dim, std::move(rotation));
  }
  CQKV_CHECK(spec.family == KvFamily::kIntChannel, "KV format '{}' is not an int format",
             spec.text);
  const int group = spec.group > 0 ? spec.group : 128;
  CQKV_CHECK(shape.page_tokens % group == 0,
             "KV format '{}': token group g{} must divide the KV page of {} tokens (a group's "
             "parameters live in the page of its tokens)",
             spec.text, group, shape.page_tokens);
  return std::make_unique<ChannelGroupCache>(spec.text, shape, spec.bits, group, nullptr,
                                             std::move(rotation));
}

}  // namespace cqkv
