#include "kv/dense_cache.h"

#include <algorithm>
#include <memory>
#include <vector>

#include "kernels/attn_dense.h"
#include "kernels/ops.h"
#include "kv/attention.h"
#include "kv/decode_attention.h"
#include "kv/page_layout.h"
#include "util/error.h"
#include "util/fp16.h"

namespace cqkv {
namespace {

// Element storage of a dense cache: fp32 as is, fp16 as raw IEEE half bits.
template <typename T>
struct Elem;
template <>
struct Elem<float> {
  static constexpr const char* kName = "fp32";
  static void Store(const float* x, float* out, int64_t n) { std::copy(x, x + n, out); }
  static void Load(const float* x, float* out, int64_t n) { std::copy(x, x + n, out); }
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
  static void Load(const uint16_t* x, float* out, int64_t n) {
    for (int64_t i = 0; i < n; ++i) out[i] = F16ToF32(x[i]);
  }
  static float Dot(const uint16_t* k, const float* q, int64_t n) { return DotF16(k, q, n); }
  static void Axpy(float p, const uint16_t* v, float* out, int64_t n) { AxpyF16(p, v, out, n); }
  static void Attend(const float* q, const uint16_t* k, const uint16_t* v, int64_t stride,
                     int64_t n, const AttnState& s) {
    DenseAttendF16(q, k, v, stride, n, s);
  }
};

// Paged: a page holds, per (layer, K/V, KV head), that head's page_tokens rows of head_dim
// elements as one (page_tokens, head_dim) row-major region (kv/page_layout.h). Head-major within
// a page because decode attention sweeps one KV head at a time: its rows are then one contiguous
// stream per page the hardware prefetchers follow, where a token-major layout (rows kv_dim apart)
// reads head_dim of every kv_dim channels and measured 2.5x slower per head at 8 KV heads.
template <typename T>
class DenseKvCache final : public KvCache {
 public:
  DenseKvCache(const KvShape& shape, std::shared_ptr<PagePool> pool)
      : KvCache(shape, std::move(pool)),
        regions_(PageRegions::For(shape, int64_t{shape.page_tokens} * shape.head_dim * sizeof(T))),
        n_(shape.n_layers, 0) {}

  std::string format() const override { return Elem<T>::kName; }

  std::unique_ptr<KvCache> NewSibling(std::shared_ptr<PagePool> pool) const override {
    return std::make_unique<DenseKvCache>(shape_, std::move(pool));
  }
  int64_t PageBytes() const override { return regions_.page_bytes(); }

  void Append(int layer, const KvBlock& block) override {
    const int hd = shape_.head_dim;
    const int64_t n = block.k.rows;
    CQKV_CHECK(block.pos0 == n_[layer], "kv cache: layer {} expected position {}, got {}", layer,
               n_[layer], block.pos0);
    CQKV_CHECK(n_[layer] + n <= shape_.max_tokens,
               "kv cache: context of {} tokens exceeds the cache capacity of {}", n_[layer] + n,
               shape_.max_tokens);
    if (n == 0) return;
    EnsurePage(n_[layer] + n - 1);  // every page of the block, before anything is written
    for (int64_t i = 0; i < n; ++i) {
      const int64_t t = n_[layer] + i;
      for (int h = 0; h < shape_.n_kv_heads; ++h) {
        Elem<T>::Store(block.k.Row(i) + int64_t{h} * hd, MutRow(layer, 0, h, t), hd);
        Elem<T>::Store(block.v.Row(i) + int64_t{h} * hd, MutRow(layer, 1, h, t), hd);
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
        return Elem<T>::Dot(self->Row(layer, 0, kvh, t), qh, hd);
      }
      void AddValue(int64_t t, int kvh, float p, float* o) const {
        Elem<T>::Axpy(p, self->Row(layer, 1, kvh, t), o, hd);
      }
    };
    const Ops ops{this, layer, shape_.head_dim};
    CausalAttention(shape_, ops, q, pos0, out, pool);
  }

  // One kernel call per page the range touches, all folding into the same softmax state: the
  // kernel's 64-token blocks start on page boundaries (multiples of 256), so the result is the
  // one a single contiguous call gives.
  void AttendPartial(int layer, int kv_head, const float* q_group, int group, int64_t t0,
                     int64_t t1, float* m, float* l, float* acc) const override {
    const int hd = shape_.head_dim;
    const AttnState s{m, l, acc, group, hd};
    ResetAttnState(s);
    ForEachPageRange(t0, t1, shape_.page_tokens, [&](int64_t, int64_t b, int64_t e) {
      Elem<T>::Attend(q_group, Row(layer, 0, kv_head, b), Row(layer, 1, kv_head, b), hd, e - b, s);
    });
  }
  bool HasAttendPartial() const override { return true; }

  void ReadRows(int layer, KvPart part, int64_t t0, int64_t n, int kvh, float* out) const override {
    const int hd = shape_.head_dim, p = part == KvPart::kKey ? 0 : 1;
    for (int64_t i = 0; i < n; ++i) Elem<T>::Load(Row(layer, p, kvh, t0 + i), out + i * hd, hd);
  }
  bool HasReadRows() const override { return true; }

  int64_t tokens(int layer) const override { return n_[layer]; }

  void Clear() override {
    ReleasePages();
    std::fill(n_.begin(), n_.end(), 0);
  }

  double BytesPerToken() const override {
    return 2.0 * shape_.n_layers * shape_.kv_dim() * sizeof(T);
  }

 private:
  // Row of token t of (layer, part, kv_head); its page must be held.
  const T* Row(int layer, int part, int kvh, int64_t t) const {
    const uint8_t* page = PageData(t / shape_.page_tokens);
    return reinterpret_cast<const T*>(page + regions_.Offset(layer, part, kvh)) +
           (t % shape_.page_tokens) * shape_.head_dim;
  }
  T* MutRow(int layer, int part, int kvh, int64_t t) {
    return const_cast<T*>(Row(layer, part, kvh, t));
  }

  PageRegions regions_;     // (page_tokens, head_dim) of T per (layer, part, KV head)
  std::vector<int64_t> n_;  // tokens per layer
};

}  // namespace

std::unique_ptr<KvCache> MakeFp32Cache(const KvShape& shape) {
  return std::make_unique<DenseKvCache<float>>(shape, nullptr);
}
std::unique_ptr<KvCache> MakeFp16Cache(const KvShape& shape) {
  return std::make_unique<DenseKvCache<uint16_t>>(shape, nullptr);
}

}  // namespace cqkv
