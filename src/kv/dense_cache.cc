#include "kv/dense_cache.h"

#include <algorithm>
#include <vector>

#include "kernels/attn_dense.h"
#include "kernels/ops.h"
#include "kv/attention.h"
#include "kv/decode_attention.h"
#include "util/error.h"

namespace cqkv {
namespace {

// Element storage of a dense cache: fp32 as is, fp16 as raw IEEE half bits.
template <typename T>
struct Elem;
template <>
struct Elem<float> {
  static constexpr const char* kName = "fp32";
  static void Store(const float* x, float* out, int64_t n) { std::copy(x, x + n, out); }
  static float Dot(const float* k, const float* q, int64_t n) { return cqkv::Dot(k, q, n); }
  static void Axpy(float p, const float* v, float* out, int64_t n) { cqkv::Axpy(p, v, out, n); }
  static void Attend(const float* q, const float* k, const float* v, int64_t stride, int64_t n,
                     const AttnState& s) {
    DenseAttendF32(q, k, v, stride, n, s);
  }
};
template <>
struct Elem<uint16_t> {
  static constexpr const char* kName = "fp16";
  static void Store(const float* x, uint16_t* out, int64_t n) { F32ToF16Row(x, out, n); }
  static float Dot(const uint16_t* k, const float* q, int64_t n) { return DotF16(k, q, n); }
  static void Axpy(float p, const uint16_t* v, float* out, int64_t n) { AxpyF16(p, v, out, n); }
  static void Attend(const float* q, const uint16_t* k, const uint16_t* v, int64_t stride,
                     int64_t n, const AttnState& s) {
    DenseAttendF16(q, k, v, stride, n, s);
  }
};

// Per (layer, KV head): K and V as (tokens, head_dim) row-major arrays, grown as tokens arrive
// so memory follows the context actually used, up to shape.max_tokens. Head-major because decode
// attention sweeps one KV head at a time: its rows are then one contiguous stream the hardware
// prefetchers follow, where a token-major layout (rows kv_dim apart) reads head_dim of every
// kv_dim channels and measured 2.5x slower per head at 8 KV heads.
template <typename T>
class DenseKvCache final : public KvCache {
 public:
  explicit DenseKvCache(const KvShape& shape)
      : KvCache(shape),
        k_(static_cast<size_t>(shape.n_layers) * shape.n_kv_heads),
        v_(k_.size()),
        n_(shape.n_layers, 0) {}

  std::string format() const override { return Elem<T>::kName; }

  void Append(int layer, const KvBlock& block) override {
    const int hd = shape_.head_dim;
    const int64_t n = block.k.rows;
    CQKV_CHECK(block.pos0 == n_[layer], "kv cache: layer {} expected position {}, got {}", layer,
               n_[layer], block.pos0);
    CQKV_CHECK(n_[layer] + n <= shape_.max_tokens,
               "kv cache: context of {} tokens exceeds the cache capacity of {}", n_[layer] + n,
               shape_.max_tokens);
    const size_t need = static_cast<size_t>((n_[layer] + n) * hd);
    for (int h = 0; h < shape_.n_kv_heads; ++h) {
      std::vector<T>& k = k_[shape_.HeadSlot(layer, h)];
      std::vector<T>& v = v_[shape_.HeadSlot(layer, h)];
      k.resize(need);
      v.resize(need);
      for (int64_t i = 0; i < n; ++i) {
        const int64_t off = (n_[layer] + i) * hd;
        Elem<T>::Store(block.k.Row(i) + int64_t{h} * hd, k.data() + off, hd);
        Elem<T>::Store(block.v.Row(i) + int64_t{h} * hd, v.data() + off, hd);
      }
    }
    n_[layer] += n;
  }

  void Attend(int layer, ConstMat q, int64_t pos0, Mat out, ThreadPool& pool) const override {
    CQKV_CHECK(pos0 + q.rows <= n_[layer], "kv cache: attending past the cached tokens");
    if (q.rows == 1) {  // decode: split over token blocks (flash-decoding)
      const DecodeSeq seq{this, pos0 + 1};
      DecodeAttention(std::span(&seq, 1), layer, q, out, pool);
      return;
    }
    struct Ops {
      const DenseKvCache* self;
      int layer;
      int hd;
      float Score(int64_t t, int kvh, const float* qh) const {
        return Elem<T>::Dot(self->k_[self->shape_.HeadSlot(layer, kvh)].data() + t * hd, qh, hd);
      }
      void AddValue(int64_t t, int kvh, float p, float* o) const {
        Elem<T>::Axpy(p, self->v_[self->shape_.HeadSlot(layer, kvh)].data() + t * hd, o, hd);
      }
    };
    const Ops ops{this, layer, shape_.head_dim};
    CausalAttention(shape_, ops, q, pos0, out, pool);
  }

  void AttendPartial(int layer, int kv_head, const float* q_group, int group, int64_t t0,
                     int64_t t1, float* m, float* l, float* acc) const override {
    const int hd = shape_.head_dim;
    const AttnState s{m, l, acc, group, hd};
    ResetAttnState(s);
    const int64_t off = t0 * hd;
    const size_t slot = shape_.HeadSlot(layer, kv_head);
    Elem<T>::Attend(q_group, k_[slot].data() + off, v_[slot].data() + off, hd, t1 - t0, s);
  }
  bool HasAttendPartial() const override { return true; }

  int64_t tokens(int layer) const override { return n_[layer]; }

  void Clear() override {
    for (auto& k : k_) k.clear();
    for (auto& v : v_) v.clear();
    std::fill(n_.begin(), n_.end(), 0);
  }

  double BytesPerToken() const override {
    return 2.0 * shape_.n_layers * shape_.kv_dim() * sizeof(T);
  }

 private:
  std::vector<std::vector<T>> k_, v_;  // [shape_.HeadSlot(layer, kv_head)]: (tokens, head_dim)
  std::vector<int64_t> n_;
};

}  // namespace

std::unique_ptr<KvCache> MakeFp32Cache(const KvShape& shape) {
  return std::make_unique<DenseKvCache<float>>(shape);
}
std::unique_ptr<KvCache> MakeFp16Cache(const KvShape& shape) {
  return std::make_unique<DenseKvCache<uint16_t>>(shape);
}

}  // namespace cqkv
