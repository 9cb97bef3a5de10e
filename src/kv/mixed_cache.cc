#include "kv/mixed_cache.h"

#include <algorithm>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "kernels/attn_dense.h"
#include "kernels/ops.h"
#include "kv/attention.h"
#include "kv/cq_cache.h"
#include "kv/decode_attention.h"
#include "kv/mixed_spec.h"
#include "kv/page_layout.h"
#include "quant/codebook.h"
#include "util/error.h"

namespace cqkv {
namespace {

// Where a layer's keys and values live: sub-cache index and that sub-cache's own layer index.
struct LayerMap {
  int k_child = 0, k_local = 0;
  int v_child = 0, v_local = 0;
  bool split() const { return k_child != v_child; }
};

class MixedKvCache final : public KvCache {
 public:
  MixedKvCache(std::string spec, const KvShape& shape,
               std::vector<std::unique_ptr<KvCache>> children, std::vector<LayerMap> layers,
               std::shared_ptr<PagePool> pool)
      : KvCache(shape, std::move(pool)),
        spec_(std::move(spec)),
        children_(std::move(children)),
        layers_(std::move(layers)) {
    int64_t off = 0;
    for (const auto& c : children_) {
      offsets_.push_back(off);
      off += AlignUp64(c->PageBytes());
    }
    page_bytes_ = off;
    CQKV_CHECK(!this->pool() || this->pool()->page_bytes() == page_bytes_,
               "KV format '{}': pool pages of {} bytes, this format needs {}", spec_,
               this->pool()->page_bytes(), page_bytes_);
  }

  std::string format() const override { return spec_; }

  std::unique_ptr<KvCache> NewSibling(std::shared_ptr<PagePool> pool) const override {
    std::vector<std::unique_ptr<KvCache>> children;
    for (const auto& c : children_) children.push_back(c->NewSibling(nullptr));
    return std::make_unique<MixedKvCache>(spec_, shape_, std::move(children), layers_,
                                          std::move(pool));
  }

  // Both sub-caches of a split layer check the block the same way; checking here first keeps a
  // failed Append from leaving one of them appended.
  void Append(int layer, const KvBlock& block) override {
    const LayerMap& m = layers_[layer];
    const int64_t n = block.k.rows, have = tokens(layer);
    CQKV_CHECK(block.pos0 == have, "kv cache: layer {} expected position {}, got {}", layer, have,
               block.pos0);
    CQKV_CHECK(have + n <= shape_.max_tokens,
               "kv cache: context of {} tokens exceeds the cache capacity of {}", have + n,
               shape_.max_tokens);
    if (n == 0) return;
    EnsurePage(have + n - 1);
    for (size_t i = 0; i < children_.size(); ++i) LendPages(*children_[i], offsets_[i]);
    children_[m.k_child]->Append(m.k_local, block);
    if (m.split()) children_[m.v_child]->Append(m.v_local, block);
  }

  int64_t ExactPrefillRows(int layer) const override {
    const LayerMap& m = layers_[layer];
    const int64_t k = children_[m.k_child]->ExactPrefillRows(m.k_local);
    return m.split() ? std::min(k, children_[m.v_child]->ExactPrefillRows(m.v_local)) : k;
  }

  void Attend(int layer, ConstMat q, int64_t pos0, Mat out, ThreadPool& pool) const override {
    const LayerMap& m = layers_[layer];
    if (!m.split()) return children_[m.k_child]->Attend(m.k_local, q, pos0, out, pool);
    CQKV_CHECK(pos0 + q.rows <= tokens(layer), "kv cache: attending past the cached tokens");
    if (q.rows == 1) {
      const DecodeSeq seq{this, pos0 + 1};
      DecodeAttention(std::span(&seq, 1), layer, q, out, pool);
      return;
    }
    // Prefill: every head's rows of the context once, (n_kv_heads, n_ctx, head_dim) each.
    const int hd = shape_.head_dim, n_kv = shape_.n_kv_heads;
    const int64_t n_ctx = pos0 + q.rows, head_floats = n_ctx * hd;
    std::vector<float> k(static_cast<size_t>(n_kv * head_floats)), v(k.size());
    pool.ParallelFor(2 * n_kv, 1, [&](int64_t j0, int64_t j1, int) {
      for (int64_t j = j0; j < j1; ++j) {
        const int h = static_cast<int>(j / 2);
        float* dst = (j % 2 == 0 ? k : v).data() + h * head_floats;
        if (j % 2 == 0) {
          children_[m.k_child]->ReadRows(m.k_local, KvPart::kKey, 0, n_ctx, h, dst);
        } else {
          children_[m.v_child]->ReadRows(m.v_local, KvPart::kValue, 0, n_ctx, h, dst);
        }
      }
    });
    struct Ops {
      const float* k;
      const float* v;
      int64_t head_floats;
      int hd;
      float Score(int64_t t, int kvh, const float* qh) const {
        return Dot(k + kvh * head_floats + t * hd, qh, hd);
      }
      void AddValue(int64_t t, int kvh, float p, float* o) const {
        Axpy(p, v + kvh * head_floats + t * hd, o, hd);
      }
    };
    CausalAttention(shape_, Ops{k.data(), v.data(), head_floats, hd}, q, pos0, out, pool);
  }

  // A layer whose keys and values share a sub-cache prepares the query as that sub-cache does;
  // a split layer scores model-space rows (ReadRows), so takes the query as it is.
  int64_t PreparedQueryFloats(int layer, int group) const override {
    const LayerMap& lm = layers_[layer];
    return lm.split() ? KvCache::PreparedQueryFloats(layer, group)
                      : children_[lm.k_child]->PreparedQueryFloats(lm.k_local, group);
  }
  void PrepareQuery(int layer, int kv_head, const float* q_group, int group,
                    float* prepared) const override {
    const LayerMap& lm = layers_[layer];
    if (lm.split()) return KvCache::PrepareQuery(layer, kv_head, q_group, group, prepared);
    children_[lm.k_child]->PrepareQuery(lm.k_local, kv_head, q_group, group, prepared);
  }
  void AttendPartialPrepared(int layer, int kv_head, const float* prepared, int group, int64_t t0,
                             int64_t t1, float* m, float* l, float* acc) const override {
    const LayerMap& lm = layers_[layer];
    if (lm.split()) return AttendPartial(layer, kv_head, prepared, group, t0, t1, m, l, acc);
    children_[lm.k_child]->AttendPartialPrepared(lm.k_local, kv_head, prepared, group, t0, t1, m, l,
                                                 acc);
  }

  // Split layers: blocks of rows read into stack scratch (32 KiB each, as the quantised formats
  // do) and folded into one softmax state by the dense kernel.
  void AttendPartial(int layer, int kv_head, const float* q_group, int group, int64_t t0,
                     int64_t t1, float* m, float* l, float* acc) const override {
    const LayerMap& lm = layers_[layer];
    if (!lm.split()) {
      return children_[lm.k_child]->AttendPartial(lm.k_local, kv_head, q_group, group, t0, t1, m, l,
                                                  acc);
    }
    const int hd = shape_.head_dim;
    const AttnState s{m, l, acc, group, hd};
    ResetAttnState(s);
    constexpr int64_t kScratch = 8192;
    alignas(64) float k[kScratch];
    alignas(64) float v[kScratch];
    const int64_t block = std::max<int64_t>(1, kScratch / hd);
    CQKV_CHECK(hd <= kScratch, "KV format '{}': head_dim {} over {}", spec_, hd, kScratch);
    for (int64_t b0 = t0; b0 < t1; b0 += block) {
      const int64_t n = std::min(block, t1 - b0);
      children_[lm.k_child]->ReadRows(lm.k_local, KvPart::kKey, b0, n, kv_head, k);
      children_[lm.v_child]->ReadRows(lm.v_local, KvPart::kValue, b0, n, kv_head, v);
      DenseAttendF32(q_group, k, v, hd, n, s);
    }
  }
  bool HasAttendPartial() const override { return true; }

  void ReadRows(int layer, KvPart part, int64_t t0, int64_t n, int kvh, float* out) const override {
    const LayerMap& m = layers_[layer];
    const bool key = part == KvPart::kKey;
    children_[key ? m.k_child : m.v_child]->ReadRows(key ? m.k_local : m.v_local, part, t0, n, kvh,
                                                     out);
  }
  bool HasReadRows() const override {
    return std::all_of(children_.begin(), children_.end(),
                       [](const auto& c) { return c->HasReadRows(); });
  }

  int64_t tokens(int layer) const override {
    const LayerMap& m = layers_[layer];
    return children_[m.k_child]->tokens(m.k_local);
  }

  void Clear() override {
    for (const auto& c : children_) c->Clear();
    ReleasePages();
  }

  // Everything stored, the unread halves of split layers included.
  double BytesPerToken() const override {
    double sum = 0;
    for (const auto& c : children_) sum += c->BytesPerToken();
    return sum;
  }
  // The average over layers and K/V of each part's format (a sub-cache's BitsPerChannel is its
  // own K/V average), as a paper would quote the mixture.
  double BitsPerChannel() const override {
    double sum = 0;
    for (const LayerMap& m : layers_) {
      sum += children_[m.k_child]->BitsPerChannel() + children_[m.v_child]->BitsPerChannel();
    }
    return sum / (2.0 * static_cast<double>(layers_.size()));
  }

  int64_t PageBytes() const override { return page_bytes_; }
  int64_t FixedBytes() const override {
    int64_t sum = 0;
    for (const auto& c : children_) sum += c->FixedBytes();
    return sum;
  }
  int64_t SharedBytes() const override {
    int64_t sum = 0;
    for (const auto& c : children_) sum += c->SharedBytes();
    return sum;
  }

 private:
  std::string spec_;
  std::vector<std::unique_ptr<KvCache>> children_;
  std::vector<LayerMap> layers_;  // [layer]
  std::vector<int64_t> offsets_;  // [child]: byte offset of its page in a composite page
  int64_t page_bytes_ = 0;
};

// A sub-cache of `sub` over `layers` (ascending) of a model of `shape`. CQ codebooks are checked
// against the whole model, then only the used layers' tables are kept.
std::unique_ptr<KvCache> MakeChild(const KvSpec& sub, const KvShape& shape,
                                   const std::vector<int>& layers) {
  KvShape s = shape;
  s.n_layers = static_cast<int>(layers.size());
  if (sub.family != KvFamily::kCq) return MakeKvCache(sub, s);
  CodebookSet all = LoadCodebooks(sub.path);
  CheckCodebooksFit(all, shape, sub.path);
  std::vector<std::vector<float>> centroids = std::move(all.centroids);
  std::vector<double> objective = std::move(all.objective);
  std::vector<std::vector<float>> value_basis = std::move(all.value_basis);
  CodebookSet set = std::move(all);
  set.n_layers = s.n_layers;
  set.centroids.clear();
  set.objective.clear();
  set.value_basis.clear();
  for (int l : layers) {
    for (int kind = 0; kind < 2; ++kind) {
      set.centroids.push_back(std::move(centroids[static_cast<size_t>(l) * 2 + kind]));
      set.objective.push_back(objective[static_cast<size_t>(l) * 2 + kind]);
    }
    // Additive values (quant/codebook.h): their bases are per layer too.
    if (!value_basis.empty()) set.value_basis.push_back(std::move(value_basis[l]));
  }
  return MakeCqCache(std::move(set), s, std::max(0, sub.window), sub.text);
}

}  // namespace

std::unique_ptr<KvCache> MakeMixedCache(const KvSpec& spec, const KvShape& shape) {
  CQKV_CHECK(spec.family == KvFamily::kMixed && spec.mixed, "KV format '{}' is not a mixed format",
             spec.text);
  const MixedSpec& mixed = *spec.mixed;
  const std::vector<int> owner = ResolveMixedLayers(mixed, shape.n_layers);
  // One sub-cache per distinct format text, over the layers that use it for K or V.
  std::map<std::string, int> index;
  std::vector<const KvSpec*> subs;
  std::vector<std::vector<int>> sub_layers;
  std::vector<LayerMap> layers(static_cast<size_t>(shape.n_layers));
  auto use = [&](const KvSpec& sub, int layer, int* child, int* local) {
    auto [it, fresh] = index.emplace(sub.text, static_cast<int>(subs.size()));
    if (fresh) {
      subs.push_back(&sub);
      sub_layers.emplace_back();
    }
    *child = it->second;
    *local = static_cast<int>(sub_layers[it->second].size());
    sub_layers[it->second].push_back(layer);
  };
  for (int l = 0; l < shape.n_layers; ++l) {
    const MixedPart& part = mixed.parts[static_cast<size_t>(owner[l])];
    LayerMap& m = layers[l];
    use(part.k, l, &m.k_child, &m.k_local);
    if (part.split()) {
      use(part.v, l, &m.v_child, &m.v_local);
    } else {
      m.v_child = m.k_child;
      m.v_local = m.k_local;
    }
  }
  std::vector<std::unique_ptr<KvCache>> children;
  for (size_t i = 0; i < subs.size(); ++i) {
    try {
      children.push_back(MakeChild(*subs[i], shape, sub_layers[i]));
    } catch (const Error& e) {
      throw Error(fmt::format("KV format '{}': {}", spec.text, e.what()), e.code());
    }
    CQKV_CHECK(children.back()->HasAttendPartial(),
               "KV format '{}': '{}' has no decode attention to compose", spec.text, subs[i]->text);
  }
  for (int l = 0; l < shape.n_layers; ++l) {
    const LayerMap& m = layers[l];
    if (!m.split()) continue;
    for (int c : {m.k_child, m.v_child}) {
      CQKV_CHECK(
          children[c]->HasReadRows(),
          "KV format '{}': '{}' cannot be split between keys and values (it exposes no rows)",
          spec.text, subs[c]->text);
    }
  }
  return std::make_unique<MixedKvCache>(spec.text, shape, std::move(children), std::move(layers),
                                        nullptr);
}

}  // namespace cqkv
