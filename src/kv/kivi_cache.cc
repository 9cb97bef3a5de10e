#include "kv/kivi_cache.h"

#include <algorithm>
#include <vector>

#include "kernels/ops.h"
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

class KiviCache final : public QuantKvCache {
 public:
  KiviCache(const std::string& spec, const KvShape& shape, int bits, int group, int residual)
      : QuantKvCache(spec, shape), bits_(bits), group_(group), residual_(residual) {
    layers_.reserve(shape.n_layers);
    for (int l = 0; l < shape.n_layers; ++l) {
      layers_.push_back(Layer{ChannelGroupRows(bits, shape.kv_dim(), group),
                              TokenGroupRows(GroupCodec::kUniform, bits, shape.kv_dim(), group),
                              {},
                              {}});
    }
  }

  void Append(int layer, const KvBlock& block) override {
    CheckAppend(layer, block);
    Layer& L = layers_[layer];
    const int64_t kv_dim = shape_.kv_dim();
    for (int64_t i = 0; i < block.k.rows; ++i) {
      const size_t end = L.wk.size();
      L.wk.resize(end + kv_dim);
      L.wv.resize(end + kv_dim);
      F32ToF16Row(block.k.Row(i), L.wk.data() + end, kv_dim);
      F32ToF16Row(block.v.Row(i), L.wv.data() + end, kv_dim);
      // Flushing per token keeps the window within its bound even inside a long prefill block.
      if (window_rows(L) - residual_ >= group_) Flush(L);
    }
  }

  void DequantHead(int layer, KvPart part, int64_t t, int kvh, float* out) const override {
    const Layer& L = layers_[layer];
    const int hd = shape_.head_dim;
    const int64_t q = L.kq.rows();
    if (t < q) {
      if (part == KvPart::kKey) {
        L.kq.Dequant(t, kvh * hd, hd, out);
      } else {
        L.vq.Dequant(t, kvh * hd, hd, out);
      }
      return;
    }
    const uint16_t* row =
        (part == KvPart::kKey ? L.wk : L.wv).data() + (t - q) * shape_.kv_dim() + int64_t{kvh} * hd;
    for (int c = 0; c < hd; ++c) out[c] = F16ToF32(row[c]);
  }

  int64_t tokens(int layer) const override {
    const Layer& L = layers_[layer];
    return L.kq.rows() + window_rows(L);
  }

  void Clear() override {
    for (Layer& L : layers_) {
      L.kq.Clear();
      L.vq.Clear();
      L.wk.clear();
      L.wv.clear();
    }
  }

  // Peak over the sequence of: quantised keys (codes + per-channel scale/min per G tokens),
  // quantised values (codes + per-token scale/min per G channels), and the fp16 window for K
  // and V; divided by max_tokens.
  double BytesPerToken() const override {
    const int64_t kv_dim = shape_.kv_dim();
    const ChannelGroupRows kprobe(bits_, kv_dim, group_);
    const TokenGroupRows vprobe(GroupCodec::kUniform, bits_, kv_dim, group_);
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
    const int64_t q = L.kq.rows();
    const int64_t nq = std::clamp<int64_t>(q - t0, 0, n);
    if (nq > 0) {
      if (part == KvPart::kKey) {
        L.kq.DequantBlock(t0, nq, kvh * hd, hd, out, hd);
      } else {
        L.vq.DequantBlock(t0, nq, kvh * hd, hd, out, hd);
      }
    }
    const std::vector<uint16_t>& w = part == KvPart::kKey ? L.wk : L.wv;
    for (int64_t t = t0 + nq; t < t0 + n; ++t) {
      const uint16_t* row = w.data() + (t - q) * shape_.kv_dim() + int64_t{kvh} * hd;
      float* o = out + (t - t0) * hd;
      for (int c = 0; c < hd; ++c) o[c] = F16ToF32(row[c]);
    }
  }

  struct Layer {
    ChannelGroupRows kq;       // keys of tokens [0, q): per channel, groups of G tokens
    TokenGroupRows vq;         // values of tokens [0, q): per token, groups of G channels
    std::vector<uint16_t> wk;  // (n - q, kv_dim) fp16 keys of the window
    std::vector<uint16_t> wv;  // (n - q, kv_dim) fp16 values of the window
  };

  int64_t window_rows(const Layer& L) const {
    return static_cast<int64_t>(L.wk.size()) / shape_.kv_dim();
  }

  // Moves the G oldest window tokens into the quantised stores. They are quantised from their
  // fp16 copies (the fp32 originals are gone), as KIVI quantises the fp16 tensors it holds.
  void Flush(Layer& L) {
    const int64_t kv_dim = shape_.kv_dim();
    const size_t n = static_cast<size_t>(group_ * kv_dim);
    std::vector<float> k(n), v(n);
    for (size_t i = 0; i < n; ++i) {
      k[i] = F16ToF32(L.wk[i]);
      v[i] = F16ToF32(L.wv[i]);
    }
    L.kq.Append(ConstMat(k.data(), group_, kv_dim));
    for (int r = 0; r < group_; ++r) L.vq.Append(v.data() + r * kv_dim);
    L.wk.erase(L.wk.begin(), L.wk.begin() + static_cast<std::ptrdiff_t>(n));
    L.wv.erase(L.wv.begin(), L.wv.begin() + static_cast<std::ptrdiff_t>(n));
  }

  int bits_, group_, residual_;
  std::vector<Layer> layers_;
};

}  // namespace

std::unique_ptr<QuantKvCache> MakeKiviCache(const std::string& spec, const KvShape& shape) {
  const QuantSpec s = ParseQuantSpec(spec, "gr");
  CQKV_CHECK(s.head.starts_with("kivi"), "--kv '{}': expected kivi<B>[:g<G>][:r<R>]", spec);
  const int bits = ParseBits(s, std::string_view(s.head).substr(4), {1, 2, 4});
  const int64_t group = s.Get('g', 32);
  CQKV_CHECK(group > 0 && shape.head_dim % group == 0,
             "--kv '{}': group size g{} must be positive and divide head_dim {} (values are "
             "grouped over the channels of a head)",
             spec, group, shape.head_dim);
  return std::make_unique<KiviCache>(spec, shape, bits, static_cast<int>(group),
                                     static_cast<int>(s.Get('r', 128)));
}

}  // namespace cqkv
