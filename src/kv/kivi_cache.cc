#include "kv/kivi_cache.h"

#include <algorithm>
#include <memory>
#include <vector>

#include "kernels/ops.h"
#include "kv/page_layout.h"
#include "kv/quant_rows.h"
#include "util/error.h"
#include "util/fp16.h"

namespace cqkv {
namespace {

// Tokens [0, q) are quantised and [q, n) sit in the fp16 window, where q is the largest multiple
// of G with n - q >= R. So the most recent R tokens are always exact (to fp16), the window holds
// R..R+G-1 tokens once n >= R, and keys are only ever quantised as whole token groups, which
// per-channel statistics need. KIVI's code differs in bookkeeping only: there the key window
// empties every R tokens and values leave one token at a time.
int64_t QuantizedTokens(int64_t n, int64_t group, int64_t residual) {
  return n - residual >= group ? (n - residual) / group * group : 0;
}

// Paged like int<B>-channel / int<B>-token (kv/page_layout.h): per (layer, K/V, KV head) a page
// region holds the head's quantised keys (ChannelGroupCodec, groups of G tokens; G divides
// page_tokens, so a group lies in one page) or values (TokenGroupCodec, groups of G channels).
// Keys are coded per channel and values per G-channel group inside a head, so coding each head
// apart gives exactly the values of coding the whole kv_dim row. The fp16 window is per-sequence
// state outside pages (FixedBytes); pages are still claimed as tokens arrive (CheckAppend), so a
// window token never fails for want of a page when it is flushed.
class KiviCache final : public QuantKvCache {
 public:
  KiviCache(const std::string& spec, const KvShape& shape, int bits, int group, int residual,
            std::shared_ptr<PagePool> pool)
      : QuantKvCache(spec, shape, std::move(pool)),
        bits_(bits),
        group_(group),
        residual_(residual),
        kcodec_(bits, shape.head_dim, group),
        vcodec_(GroupCodec::kUniform, bits, shape.head_dim, group),
        klayout_(kcodec_.Layout(shape.page_tokens)),
        vlayout_(vcodec_.Layout(shape.page_tokens)),
        regions_(PageRegions::For(shape, std::max(klayout_.bytes, vlayout_.bytes))),
        window_cap_(std::min<int64_t>(int64_t{residual} + group, std::max(shape.max_tokens, 1))),
        layers_(shape.n_layers) {}

  std::unique_ptr<KvCache> NewSibling(std::shared_ptr<PagePool> pool) const override {
    return std::make_unique<KiviCache>(spec_, shape_, bits_, group_, residual_, std::move(pool));
  }
  int64_t PageBytes() const override { return regions_.page_bytes(); }
  // The fp16 window of K and V, R + G rows of kv_dim per layer at most (allocated at the first
  // Append).
  int64_t FixedBytes() const override {
    return int64_t{shape_.n_layers} * 2 * window_cap_ * shape_.kv_dim() * 2;
  }

  void Append(int layer, const KvBlock& block) override {
    CheckAppend(layer, block);
    Layer& L = layers_[layer];
    const int64_t kv_dim = shape_.kv_dim();
    if (L.wk.capacity() == 0) {  // sized once: the window never outgrows R + G rows
      L.wk.reserve(static_cast<size_t>(window_cap_ * kv_dim));
      L.wv.reserve(static_cast<size_t>(window_cap_ * kv_dim));
    }
    for (int64_t i = 0; i < block.k.rows; ++i) {
      const size_t end = L.wk.size();
      L.wk.resize(end + kv_dim);
      L.wv.resize(end + kv_dim);
      F32ToF16Row(block.k.Row(i), L.wk.data() + end, kv_dim);
      F32ToF16Row(block.v.Row(i), L.wv.data() + end, kv_dim);
      // Flushing per token keeps the window within its bound even inside a long prefill block.
      if (window_rows(L) - residual_ >= group_) Flush(layer);
    }
  }

  // Query p sees tokens [0, q(p + 1)) quantised. Rows up to the next flush after the first
  // appended token keep q where that first token leaves it.
  int64_t ExactPrefillRows(int layer) const override {
    const Layer& L = layers_[layer];
    const int64_t n = tokens(layer);
    const int64_t q1 = n + 1 - L.q - residual_ >= group_ ? L.q + group_ : L.q;
    return q1 + residual_ + group_ - 1 - n;
  }

  void DequantHead(int layer, KvPart part, int64_t t, int kvh, float* out) const override {
    const Layer& L = layers_[layer];
    const int hd = shape_.head_dim;
    if (t < L.q) {
      const int64_t row = t % shape_.page_tokens;
      if (part == KvPart::kKey) {
        kcodec_.Dequant(KeyRegion(layer, kvh, t), row, 0, hd, out);
      } else {
        vcodec_.Dequant(ValueRegion(layer, kvh, t), row, 0, hd, out);
      }
      return;
    }
    const uint16_t* row = (part == KvPart::kKey ? L.wk : L.wv).data() +
                          (t - L.q) * shape_.kv_dim() + int64_t{kvh} * hd;
    for (int c = 0; c < hd; ++c) out[c] = F16ToF32(row[c]);
  }

  int64_t tokens(int layer) const override {
    const Layer& L = layers_[layer];
    return L.q + window_rows(L);
  }

  void Clear() override {
    ReleasePages();
    for (Layer& L : layers_) {
      L.q = 0;
      L.wk.clear();
      L.wv.clear();
    }
  }

  // Peak over the sequence of: quantised keys (codes + per-channel scale/min per G tokens),
  // quantised values (codes + per-token scale/min per G channels), and the fp16 window for K
  // and V; divided by max_tokens.
  double BytesPerToken() const override {
    const int64_t kv_dim = shape_.kv_dim();
    const ChannelGroupCodec kprobe(bits_, kv_dim, group_);
    const TokenGroupCodec vprobe(GroupCodec::kUniform, bits_, kv_dim, group_);
    return PeakBytesPerToken(shape_.max_tokens, [&](int64_t n) {
      const int64_t q = QuantizedTokens(n, group_, residual_);
      const int64_t per_layer =
          kprobe.BytesFor(q) + q * vprobe.RowBytes() + 2 * (n - q) * kv_dim * 2;
      return int64_t{shape_.n_layers} * per_layer;
    });
  }

  double BitsPerChannel() const override { return bits_ + 32.0 / group_; }

 private:
  // The quantised tokens through the block decoders, the rest straight from the fp16 window.
  void DequantRows(int layer, KvPart part, int64_t t0, int64_t n, int kvh,
                   float* out) const override {
    const Layer& L = layers_[layer];
    const int hd = shape_.head_dim;
    const int64_t nq = std::clamp<int64_t>(L.q - t0, 0, n);
    if (nq > 0) {  // within one page (AttendPartial splits by page)
      const int64_t row = t0 % shape_.page_tokens;
      if (part == KvPart::kKey) {
        kcodec_.DequantBlock(KeyRegion(layer, kvh, t0), row, nq, 0, hd, out, hd);
      } else {
        vcodec_.DequantBlock(ValueRegion(layer, kvh, t0), row, nq, 0, hd, out, hd);
      }
    }
    const std::vector<uint16_t>& w = part == KvPart::kKey ? L.wk : L.wv;
    for (int64_t t = t0 + nq; t < t0 + n; ++t) {
      const uint16_t* row = w.data() + (t - L.q) * shape_.kv_dim() + int64_t{kvh} * hd;
      float* o = out + (t - t0) * hd;
      for (int c = 0; c < hd; ++c) o[c] = F16ToF32(row[c]);
    }
  }

  struct Layer {
    int64_t q = 0;             // tokens [0, q) are quantised, in pages
    std::vector<uint16_t> wk;  // (n - q, kv_dim) fp16 keys of the window
    std::vector<uint16_t> wv;  // (n - q, kv_dim) fp16 values of the window
  };

  int64_t window_rows(const Layer& L) const {
    return static_cast<int64_t>(L.wk.size()) / shape_.kv_dim();
  }
  // The regions of kv head kvh in the page holding token t (held).
  RowsRegion KeyRegion(int layer, int kvh, int64_t t) const {
    return klayout_.At(PageData(t / shape_.page_tokens) + regions_.Offset(layer, 0, kvh));
  }
  RowsRegion ValueRegion(int layer, int kvh, int64_t t) const {
    return vlayout_.At(PageData(t / shape_.page_tokens) + regions_.Offset(layer, 1, kvh));
  }

  // Moves the G oldest window tokens into the quantised pages. They are quantised from their
  // fp16 copies (the fp32 originals are gone), as KIVI quantises the fp16 tensors it holds.
  void Flush(int layer) {
    Layer& L = layers_[layer];
    const int64_t kv_dim = shape_.kv_dim();
    const int hd = shape_.head_dim;
    const size_t n = static_cast<size_t>(group_ * kv_dim);
    std::vector<float> k(n), v(n);
    for (size_t i = 0; i < n; ++i) {
      k[i] = F16ToF32(L.wk[i]);
      v[i] = F16ToF32(L.wv[i]);
    }
    const int64_t row = L.q % shape_.page_tokens;  // G divides page_tokens: one page
    for (int h = 0; h < shape_.n_kv_heads; ++h) {
      kcodec_.EncodeGroup(k.data() + int64_t{h} * hd, group_, kv_dim, KeyRegion(layer, h, L.q),
                          row);
      const RowsRegion vr = ValueRegion(layer, h, L.q);
      for (int r = 0; r < group_; ++r) {
        vcodec_.Encode(v.data() + r * kv_dim + int64_t{h} * hd, vr, row + r);
      }
    }
    L.q += group_;
    L.wk.erase(L.wk.begin(), L.wk.begin() + static_cast<std::ptrdiff_t>(n));
    L.wv.erase(L.wv.begin(), L.wv.begin() + static_cast<std::ptrdiff_t>(n));
  }

  int bits_, group_, residual_;
  ChannelGroupCodec kcodec_;  // one KV head's keys
  TokenGroupCodec vcodec_;    // one KV head's values
  RowsLayout klayout_, vlayout_;
  PageRegions regions_;  // each region fits either layout
  int64_t window_cap_;   // min(R + G, max_tokens) rows
  std::vector<Layer> layers_;
};

}  // namespace

std::unique_ptr<QuantKvCache> MakeKiviCache(const KvSpec& spec, const KvShape& shape) {
  CQKV_CHECK(spec.family == KvFamily::kKivi, "KV format '{}' is not a kivi format", spec.text);
  const int group = spec.group > 0 ? spec.group : 32;
  CQKV_CHECK(shape.head_dim % group == 0,
             "KV format '{}': group size g{} must divide head_dim {} (values are grouped over "
             "the channels of a head)",
             spec.text, group, shape.head_dim);
  CQKV_CHECK(shape.page_tokens % group == 0,
             "KV format '{}': group size g{} must divide the KV page of {} tokens (a key group's "
             "parameters live in the page of its tokens)",
             spec.text, group, shape.page_tokens);
  return std::make_unique<KiviCache>(spec.text, shape, spec.bits, group,
                                     spec.window >= 0 ? spec.window : 128, nullptr);
}

}  // namespace cqkv
