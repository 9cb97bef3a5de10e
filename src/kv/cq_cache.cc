#include "kv/cq_cache.h"

#include <algorithm>
#include <cassert>
#include <cstring>
#include <vector>

#include "kernels/attn_cq.h"
#include "kernels/attn_cq_fastscan.h"
#include "kernels/attn_cq_nibble.h"
#include "kernels/attn_cq_ropecomm.h"
#include "kernels/attn_cq_values.h"
#include "kernels/attn_dense.h"
#include "kernels/ops.h"
#include "kernels/rope.h"
#include "kv/attention.h"
#include "kv/decode_attention.h"
#include "quant/kmeans.h"
#include "quant/rope_comm.h"
#include "util/error.h"
#include "util/fp16.h"

namespace cqkv {
namespace {

// Pre-RoPE keys are decoded into a stack buffer of one head before rotation.
constexpr int kMaxHeadDim = 1024;

// Packed codes are written by OR-ing into zeroed bytes (pages come zeroed from the pool): code i
// of a stream of b-bit codes takes bits [i * b, i * b + b), little-endian (ReadCqCode reads
// them back). Widths other than 4 and 8 touch a 32-bit word, so their streams keep 4 spare bytes.
void PutCqCode(uint8_t* p, int64_t i, uint32_t code, int bits) {
  assert(code < (1u << bits));
  if (bits == 8) {
    p[i] = static_cast<uint8_t>(code);
  } else if (bits == 4) {
    p[i >> 1] |= static_cast<uint8_t>(code << ((i & 1) * 4));
  } else {
    const uint64_t bit = static_cast<uint64_t>(i) * bits;
    uint8_t* w8 = p + (bit >> 3);
    uint32_t w;
    std::memcpy(&w, w8, 4);
    w |= code << (bit & 7);
    std::memcpy(w8, &w, 4);
  }
}

// What every sequence of one model shares: the codebook tables and, for pre-RoPE codebooks, the
// rotation table. Read-only once built, so siblings (NewSibling) hold one copy between them, as
// the sequences of a batch would.
struct CqShared {
  CqConfig config;
  KeyPosition keys = KeyPosition::kPostRope;
  // [layer * 2 + kind]: (n_groups, c, 2^b), channel-major within each group: the layout of the
  // SIMD nearest-centroid search; decoding reads a centroid with stride 2^b.
  std::vector<std::vector<float>> tables;
  RopeTable rope;  // (max_tokens) positions; only for pre-RoPE codebooks
  // Additive values (CodebookSet::value_basis): decode sums weights per code bit instead of
  // per centroid (kernels/attn_cq_values.h); every other path reads the expanded tables.
  // Residual values on 8-bit codes sum two 16-bin histograms per group, one per stage
  // (kernels/attn_cq_nibble.h).
  ValueKind values = ValueKind::kKMeans;
  std::vector<std::vector<float>> value_basis;  // [layer] (n_groups, basis_rows, c)
  int basis_rows = 0;                           // CodebookSet::value_basis_rows()
  // Pre-RoPE keys whose groups hold whole RoPE pairs (quant/rope_comm.h; every such k-means
  // codebook is rope-commutative, whatever kind the file records): decode scores them with
  // RopeCommScores from these centroid-major copies of the key tables instead of rotating each
  // key with `rope` (about 2x faster, same scores to fp32 rounding).
  bool rope_comm = false;
  std::vector<std::vector<float>> key_rows;  // [layer] (n_groups, 2^b, c)
  RopeCommPhases phases;
};

std::shared_ptr<const CqShared> MakeCqShared(CodebookSet set, const KvShape& shape,
                                             const std::string& spec) {
  auto sh = std::make_shared<CqShared>();
  sh->config = set.config;
  sh->keys = set.keys;
  sh->values = set.values;
  sh->value_basis = std::move(set.value_basis);
  sh->basis_rows = set.value_basis_rows();
  CQKV_CHECK(set.values == ValueKind::kKMeans ||
                 sh->value_basis.size() == static_cast<size_t>(set.n_layers),
             "KV format '{}': {} values with bases for {} of {} layers", spec,
             ValueKindName(set.values), sh->value_basis.size(), set.n_layers);
  CQKV_CHECK(set.values == ValueKind::kKMeans ||
                 (shape.head_dim / set.config.channels * set.config.bits) % 8 == 0,
             "KV format '{}': {} values need each head's codes to fill whole bytes "
             "({} groups x {} bits)",
             spec, ValueKindName(set.values), shape.head_dim / set.config.channels,
             set.config.bits);
  const int c = set.config.channels, k = set.config.n_centroids();
  const std::string why =
      set.keys == KeyPosition::kPreRope
          ? RopeCommUnsupported(set.config, shape.head_dim, shape.rope.type == RopeType::kNeox)
          : "keys are post-RoPE";
  CQKV_CHECK(set.key_kind != KeyKind::kRopeComm || why.empty(),
             "KV format '{}': rope-comm keys need pre-RoPE codebooks of whole RoPE pairs: {}", spec,
             why);
  const bool pairs_whole = set.keys == KeyPosition::kPreRope && why.empty();
  sh->rope_comm = pairs_whole;
  if (sh->rope_comm) {
    for (int l = 0; l < set.n_layers; ++l) sh->key_rows.push_back(set.centroids[2 * l]);
    try {
      sh->phases = RopeCommPhases(shape.head_dim, shape.max_tokens, shape.rope);
    } catch (const Error& e) {
      Fail("KV format '{}': {}", spec, e.what());
    }
  }
  // The set's own copy of each table is dropped once transposed, so one copy lives in memory.
  sh->tables.resize(set.centroids.size());
  for (size_t t = 0; t < set.centroids.size(); ++t) {
    sh->tables[t].resize(set.centroids[t].size());
    const int64_t per_group = static_cast<int64_t>(k) * c;
    for (int g = 0; g < set.n_groups(); ++g) {
      TransposeCentroids(ConstMat(set.centroids[t].data() + g * per_group, k, c),
                         sh->tables[t].data() + g * per_group);
    }
    std::vector<float>().swap(set.centroids[t]);
  }
  if (set.keys == KeyPosition::kPreRope) {
    CQKV_CHECK(shape.head_dim % 2 == 0 && shape.head_dim <= kMaxHeadDim,
               "KV format '{}': pre-RoPE keys need an even head dim <= {}, got {}", spec,
               kMaxHeadDim, shape.head_dim);
    // Pre-RoPE codebooks see keys without the position-dependent rotation (the paper's
    // choice, since channel pairs then keep one distribution across positions), so a
    // dequantised key must be rotated to its own position at attention time.
    sh->rope = RopeTable(shape.head_dim, shape.max_tokens, shape.rope);
  }
  return sh;
}

// Page layout (PageBytes): one region per (layer, kind, KV head), in that order
// ((layer * 2 + kind) * n_kv_heads + kv_head), each holding that head's codes of the page's
// page_tokens tokens as one packed stream, code (t_local * groups_per_head + gi): decode attention
// reads one KV head at a time, so its codes are contiguous, where token-major codes of every head
// would pull whole lines of which a head uses 1/n_kv_heads. A region is its code bytes, plus 4
// spare bytes for the word loads of widths other than 4 and 8 bits, rounded up to 64 bytes.
// With `fs` the key regions hold the same bytes in the fast-scan layout (CqFsKeyIndex: transposed
// blocks of 64 tokens; pages are multiples of 256 tokens, so blocks never straddle pages).
class CqKvCache final : public KvCache {
 public:
  CqKvCache(std::shared_ptr<const CqShared> shared, const KvShape& shape, int window,
            std::string spec, bool fast_scan, std::shared_ptr<PagePool> pool = nullptr)
      : KvCache(shape, std::move(pool)),
        fast_scan_(fast_scan),
        shared_(std::move(shared)),
        spec_(std::move(spec)),
        config_(shared_->config),
        keys_(shared_->keys),
        window_(std::min(window, shape.max_tokens)),
        c_(config_.channels),
        bits_(config_.bits),
        k_(config_.n_centroids()),
        groups_per_head_(shape.head_dim / config_.channels),
        region_bytes_(RegionBytes(config_, shape)),
        n_(shape.n_layers, 0),
        tables_(shared_->tables),
        rope_(shared_->rope) {
    CQKV_CHECK(window >= 0, "KV format '{}': the fp16 window must be >= 0 tokens", spec_);
    CQKV_CHECK(shape.n_heads % shape.n_kv_heads == 0,
               "KV format '{}': {} query heads are not a multiple of {} KV heads", spec_,
               shape.n_heads, shape.n_kv_heads);
    CQKV_CHECK(!this->pool() || this->pool()->page_bytes() == PageBytes(),
               "KV format '{}': pool pages of {} bytes, this format needs {}", spec_,
               this->pool()->page_bytes(), PageBytes());
    if (fast_scan_) {
      CQKV_CHECK(keys_ == KeyPosition::kPostRope,
                 "KV format '{}': fast-scan keys (:fs) need post-RoPE codebooks", spec_);
      CqHeadView probe;
      probe.bits = bits_;
      probe.groups = probe.n_groups = groups_per_head_;
      const char* why = CqFsUnsupported(probe);
      CQKV_CHECK(*why == '\0', "KV format '{}': {} (codebooks of {} bits, {} groups per head)",
                 spec_, why, bits_, groups_per_head_);
    }
    if (window_ > 0) {
      const size_t win = static_cast<size_t>(window_) * shape.kv_dim();
      win_k_.assign(shape.n_layers, std::vector<uint16_t>(win));
      win_v_.assign(shape.n_layers, std::vector<uint16_t>(win));
    }
  }

  std::unique_ptr<KvCache> NewSibling(std::shared_ptr<PagePool> pool = nullptr) const override {
    return std::make_unique<CqKvCache>(shared_, shape_, window_, spec_, fast_scan_,
                                       std::move(pool));
  }

  int64_t PageBytes() const override {
    return int64_t{2} * shape_.n_layers * shape_.n_kv_heads * region_bytes_;
  }
  // The fp16 window ring: K and V of `window` tokens per layer.
  int64_t FixedBytes() const override {
    return int64_t{2} * shape_.n_layers * window_ * shape_.kv_dim() *
           static_cast<int64_t>(sizeof(uint16_t));
  }

  // Codebook tables and, for pre-RoPE keys, the rotation table: one copy for every sibling.
  int64_t SharedBytes() const override {
    int64_t floats = 0;
    for (const auto& t : tables_) floats += static_cast<int64_t>(t.size());
    for (const auto& t : shared_->key_rows) floats += static_cast<int64_t>(t.size());
    return floats * static_cast<int64_t>(sizeof(float)) + rope_.bytes() + shared_->phases.bytes();
  }

  std::string format() const override { return spec_; }

  void Append(int layer, const KvBlock& block) override {
    const int64_t n = block.k.rows;
    const int64_t n0 = n_[layer];
    CQKV_CHECK(block.pos0 == n0, "kv cache: layer {} expected position {}, got {}", layer, n0,
               block.pos0);
    CQKV_CHECK(n0 + n <= shape_.max_tokens,
               "kv cache: context of {} tokens exceeds the cache capacity of {}", n0 + n,
               shape_.max_tokens);
    const bool pre = keys_ == KeyPosition::kPreRope;
    CQKV_CHECK(!pre || (block.k_pre.data != nullptr && block.k_pre.rows == n),
               "KV format '{}': pre-RoPE codebooks need the keys before RoPE", spec_);
    assert(block.k.cols == shape_.kv_dim() && block.v.rows == n);
    if (n == 0) return;
    // Every page of the block at once (all or none; layers share them, so the first layer to
    // reach a token takes its page), before anything is written.
    EnsurePage(n0 + n - 1);
    std::vector<int32_t> idx(static_cast<size_t>(n));
    const int64_t P = shape_.page_tokens;
    for (int kind = 0; kind < 2; ++kind) {
      const ConstMat src = kind == 1 ? block.v : pre ? block.k_pre : block.k;
      const float* table = tables_[layer * 2 + kind].data();
      const int gph = groups_per_head_;
      for (int h = 0; h < shape_.n_kv_heads; ++h) {
        for (int gi = 0; gi < gph; ++gi) {
          const int64_t g = int64_t{h} * gph + gi;
          const ConstMat centroids_t(table + g * c_ * k_, c_, k_);
          AssignNearestT(src.ColRange(g * c_, c_), centroids_t, idx.data());
          for (int64_t i = 0; i < n; ++i) {
            const int64_t t = n0 + i;
            PutCqCode(Region(layer, kind, h, t), CodeIndex(kind, t % P, gi), idx[i], bits_);
          }
        }
      }
    }
    // Codes are made at append even for tokens inside the window: a token's code does not
    // depend on when it is computed, so leaving the window is just the ring slot being reused.
    // The window holds post-RoPE keys, ready for scoring.
    for (int64_t i = std::max<int64_t>(0, n - window_); i < n; ++i) {
      const int64_t off = (n0 + i) % window_ * shape_.kv_dim();
      F32ToF16Row(block.k.Row(i), win_k_[layer].data() + off, shape_.kv_dim());
      F32ToF16Row(block.v.Row(i), win_v_[layer].data() + off, shape_.kv_dim());
    }
    n_[layer] += n;
  }

  // The ring holds only the last `window` tokens: a second token appended with the first
  // before it attends would already have pushed one of the first's exact tokens out.
  int64_t ExactPrefillRows(int layer) const override {
    return window_ > 0 ? 1 : KvCache::ExactPrefillRows(layer);
  }

  void Attend(int layer, ConstMat q, int64_t pos0, Mat out, ThreadPool& pool) const override {
    CQKV_CHECK(pos0 + q.rows <= n_[layer], "kv cache: attending past the cached tokens");
    if (q.rows == 1) {  // decode: attention on the codes, split over token blocks
      const DecodeSeq seq{this, pos0 + 1};
      DecodeAttention(std::span(&seq, 1), layer, q, out, pool);
      return;
    }
    struct Ops {
      const CqKvCache* self;
      int layer;
      const float* k_table;
      const float* v_table;
      const uint16_t* k_win;
      const uint16_t* v_win;
      int64_t window_start;  // tokens at or after it are read from the fp16 window

      // Centroid channel j of the code of (token t, group gi of head kvh) is
      // table[((kvh * groups_per_head + gi) * c + j) * 2^b + code]; `codes` is the token's
      // region (Region), `index` the code's index there (CodeIndex).
      const float* Centroid(const float* table, const uint8_t* codes, int64_t index, int kvh,
                            int gi) const {
        const CqKvCache& s = *self;
        const uint32_t code = ReadCqCode(codes, index, s.bits_);
        return table + (int64_t{kvh} * s.groups_per_head_ + gi) * s.c_ * s.k_ + code;
      }
      int64_t Local(int64_t t) const { return t % self->shape_.page_tokens; }
      int64_t WinOffset(int64_t t, int kvh) const {
        const CqKvCache& s = *self;
        return t % s.window_ * s.shape_.kv_dim() + int64_t{kvh} * s.shape_.head_dim;
      }
      float Score(int64_t t, int kvh, const float* qh) const {
        const CqKvCache& s = *self;
        const int hd = s.shape_.head_dim, c = s.c_, k = s.k_;
        if (t >= window_start) return DotF16(k_win + WinOffset(t, kvh), qh, hd);
        if (s.keys_ == KeyPosition::kPostRope) {
          float sum = 0;
          const uint8_t* codes = s.Region(layer, 0, kvh, t);
          for (int gi = 0; gi < s.groups_per_head_; ++gi) {
            const float* cent = Centroid(k_table, codes, s.CodeIndex(0, Local(t), gi), kvh, gi);
            const float* qg = qh + gi * c;
            for (int j = 0; j < c; ++j) sum += qg[j] * cent[j * k];
          }
          return sum;
        }
        float key[kMaxHeadDim];
        s.RotatedKey(layer, kvh, t, key);
        return Dot(key, qh, hd);
      }
      void AddValue(int64_t t, int kvh, float p, float* o) const {
        const CqKvCache& s = *self;
        const int c = s.c_, k = s.k_;
        if (t >= window_start) return AxpyF16(p, v_win + WinOffset(t, kvh), o, s.shape_.head_dim);
        const uint8_t* codes = s.Region(layer, 1, kvh, t);
        const int64_t base = Local(t) * s.groups_per_head_;
        for (int gi = 0; gi < s.groups_per_head_; ++gi) {
          const float* cent = Centroid(v_table, codes, base + gi, kvh, gi);
          float* og = o + gi * c;
          for (int j = 0; j < c; ++j) og[j] += p * cent[j * k];
        }
      }
    };
    const bool win = window_ > 0;
    const Ops ops{this,
                  layer,
                  tables_[layer * 2].data(),
                  tables_[layer * 2 + 1].data(),
                  win ? win_k_[layer].data() : nullptr,
                  win ? win_v_[layer].data() : nullptr,
                  win ? n_[layer] - window_ : n_[layer]};
    CausalAttention(shape_, ops, q, pos0, out, pool);
  }

  // Codes before the window go through the CQ kernels (kernels/attn_cq.h); window tokens
  // through the fp16 kernel, one call per contiguous run of ring slots, into the same state.
  // Pre-RoPE keys: a key's rotation depends on its position, so one query-side table cannot
  // serve every token (it would need a table per position, costlier than the keys themselves).
  // The key is dequantised, rotated with the RopeTable and dotted with each query head; values
  // still use the histogram path, as they are never rotated.
  void AttendPartial(int layer, int kv_head, const float* q_group, int group, int64_t t0,
                     int64_t t1, float* m, float* l, float* acc) const override {
    const int hd = shape_.head_dim;
    const AttnState s{m, l, acc, group, hd};
    ResetAttnState(s);
    const int64_t window_start =
        window_ > 0 ? std::max<int64_t>(0, n_[layer] - window_) : n_[layer];
    const int64_t code_end = std::min(t1, window_start);
    if (t0 < code_end) {
      // The head's region in each page of the range; the kernel reads pages [t0 / P, ...) only.
      const int64_t P = shape_.page_tokens;
      const int64_t first = t0 / P, last = (code_end - 1) / P;
      thread_local std::vector<const uint8_t*> k_pages, v_pages;
      if (static_cast<int64_t>(k_pages.size()) <= last) {
        k_pages.resize(static_cast<size_t>(last + 1));
        v_pages.resize(static_cast<size_t>(last + 1));
      }
      const int64_t k_off = RegionOffset(layer, 0, kv_head),
                    v_off = RegionOffset(layer, 1, kv_head);
      for (int64_t p = first; p <= last; ++p) {
        k_pages[p] = PageData(p) + k_off;
        v_pages[p] = PageData(p) + v_off;
      }
      CqHeadView hv;
      hv.k_pages = k_pages.data();
      hv.v_pages = v_pages.data();
      hv.page_tokens = P;
      hv.n_groups = groups_per_head_;
      hv.g0 = 0;
      hv.groups = groups_per_head_;
      hv.c = c_;
      hv.bits = bits_;
      const int64_t head_table = int64_t{kv_head} * groups_per_head_ * c_ * k_;
      hv.k_table = tables_[layer * 2].data() + head_table;
      hv.v_table = tables_[layer * 2 + 1].data() + head_table;
      CqScoreFn score;
      if (shared_->rope_comm) {
        RopeCommKeys rk;
        rk.codes = hv;
        rk.centroids = shared_->key_rows[layer].data() + head_table;
        rk.phases = &shared_->phases;
        score = [rk, q_group, group](int64_t b0, int64_t n, float* scores) {
          RopeCommScores(rk, q_group, group, b0, n, scores);
        };
      } else if (keys_ == KeyPosition::kPreRope) {
        score = [&](int64_t b0, int64_t n, float* scores) {
          float key[kMaxHeadDim];
          for (int64_t i = 0; i < n; ++i) {
            RotatedKey(layer, kv_head, b0 + i, key);
            for (int h = 0; h < group; ++h) scores[h * n + i] = Dot(key, q_group + h * hd, hd);
          }
        };
      }
      // Additive and residual values carry per-group bases beside their expanded tables.
      const ValueKind values = shared_->values;
      const float* basis = values == ValueKind::kKMeans
                               ? nullptr
                               : shared_->value_basis[layer].data() +
                                     int64_t{kv_head} * groups_per_head_ * shared_->basis_rows * c_;
      // Residual values on 8-bit codes: nibble histograms in registers (kernels/attn_cq_nibble.h).
      // 4-bit k-means values stay on CqAttend's paired histograms, measured 3-4x faster
      // (reports/attention/nibble_values.md).
      const bool nibble =
          values == ValueKind::kResidual && bits_ == 8 && *CqNibbleUnsupported(hv, basis) == '\0';
      const bool additive = values == ValueKind::kAdditive;
      if (nibble && fast_scan_) {
        CqAttendNibbleFastScan(hv, basis, q_group, t0, code_end, s);
      } else if (nibble) {
        CqAttendNibble(hv, basis, q_group, t0, code_end, s, score);
      } else if (fast_scan_ && additive) {
        CqAttendAdditiveFastScan(hv, basis, q_group, t0, code_end, s);
      } else if (fast_scan_) {
        CqAttendFastScan(hv, q_group, t0, code_end, s);
      } else if (additive) {
        CqAttendAdditive(hv, basis, q_group, t0, code_end, s, score);
      } else {
        CqAttend(hv, q_group, t0, code_end, s, score);
      }
    }
    for (int64_t t = std::max(t0, window_start); t < t1;) {
      // A run of ring slots [t % window, ...) without wrapping.
      const int64_t slot = t % window_;
      const int64_t run = std::min(t1 - t, window_ - slot);
      const int64_t off = slot * shape_.kv_dim() + int64_t{kv_head} * hd;
      DenseAttendF16(q_group, win_k_[layer].data() + off, win_v_[layer].data() + off,
                     shape_.kv_dim(), run, s);
      t += run;
    }
  }
  bool HasAttendPartial() const override { return true; }

  // The rows Attend uses: fp16 window rows for the last `window` tokens, else centroids (keys
  // rotated to their position when pre-RoPE).
  void ReadRows(int layer, KvPart part, int64_t t0, int64_t n, int kvh, float* out) const override {
    const int hd = shape_.head_dim, kind = part == KvPart::kKey ? 0 : 1;
    const int64_t window_start =
        window_ > 0 ? std::max<int64_t>(0, n_[layer] - window_) : n_[layer];
    const float* table =
        tables_[layer * 2 + kind].data() + int64_t{kvh} * groups_per_head_ * c_ * k_;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t t = t0 + i;
      float* row = out + i * hd;
      if (t >= window_start) {
        const uint16_t* w = (kind == 0 ? win_k_ : win_v_)[layer].data() +
                            t % window_ * shape_.kv_dim() + int64_t{kvh} * hd;
        for (int j = 0; j < hd; ++j) row[j] = F16ToF32(w[j]);
      } else if (kind == 0 && keys_ == KeyPosition::kPreRope) {
        RotatedKey(layer, kvh, t, row);
      } else {
        const uint8_t* codes = Region(layer, kind, kvh, t);
        const int64_t base = t % shape_.page_tokens * groups_per_head_;
        for (int gi = 0; gi < groups_per_head_; ++gi) {
          const float* cent = table + int64_t{gi} * c_ * k_ + ReadCqCode(codes, base + gi, bits_);
          for (int j = 0; j < c_; ++j) row[gi * c_ + j] = cent[j * k_];
        }
      }
    }
  }
  bool HasReadRows() const override { return true; }

  int64_t tokens(int layer) const override { return n_[layer]; }

  // Returns the pages to the pool; the window ring is kept (it is per sequence, rewritten
  // before it is read).
  void Clear() override {
    ReleasePages();
    std::fill(n_.begin(), n_.end(), 0);
  }

  double BytesPerToken() const override {
    return CqBytesPerToken(config_, shape_, window_).total();
  }
  double BitsPerChannel() const override { return CqCodeBitsPerChannel(config_); }

 private:
  // Pre-RoPE codebooks: the key of (layer, kv_head, token t) dequantised, then rotated to its
  // position; head_dim floats.
  void RotatedKey(int layer, int kv_head, int64_t t, float* key) const {
    const int gph = groups_per_head_;
    const uint8_t* codes = Region(layer, 0, kv_head, t);
    const int64_t base = t % shape_.page_tokens * gph;
    const float* table = tables_[layer * 2].data() + int64_t{kv_head} * gph * c_ * k_;
    for (int gi = 0; gi < gph; ++gi) {
      const float* cent = table + int64_t{gi} * c_ * k_ + ReadCqCode(codes, base + gi, bits_);
      for (int j = 0; j < c_; ++j) key[gi * c_ + j] = cent[j * k_];
    }
    rope_.Rotate(key, t);
  }

  // Index of code (page-local token lt, group gi) in its region's stream (class comment).
  int64_t CodeIndex(int kind, int64_t lt, int gi) const {
    if (kind == 0 && fast_scan_) return CqFsKeyIndex(lt, gi, groups_per_head_, bits_);
    return lt * groups_per_head_ + gi;
  }

  // Bytes of one region (see the class comment).
  static int64_t RegionBytes(const CqConfig& config, const KvShape& shape) {
    const int64_t codes =
        int64_t{shape.page_tokens} * (shape.head_dim / config.channels) * config.bits / 8;
    const int64_t spare = config.bits == 8 || config.bits == 4 ? 0 : 4;
    return (codes + spare + 63) / 64 * 64;
  }
  int64_t RegionOffset(int layer, int kind, int kv_head) const {
    return ((int64_t{layer} * 2 + kind) * shape_.n_kv_heads + kv_head) * region_bytes_;
  }
  // The codes of (layer, kind, kv_head) in the page of token t (held): token t's codes start at
  // stream index (t % page_tokens) * groups_per_head.
  uint8_t* Region(int layer, int kind, int kv_head, int64_t t) const {
    return PageData(t / shape_.page_tokens) + RegionOffset(layer, kind, kv_head);
  }

  bool fast_scan_;  // keys in the fast-scan layout (CodeIndex), scored by CqAttendFastScan
  std::shared_ptr<const CqShared> shared_;
  std::string spec_;
  CqConfig config_;
  KeyPosition keys_;
  int window_;  // fp16 ring slots, <= max_tokens
  int c_, bits_, k_, groups_per_head_;
  int64_t region_bytes_;  // per (layer, kind, KV head) in a page
  // [layer]: (window, kv_dim) IEEE half; token t in slot t % window. Keys after RoPE.
  std::vector<std::vector<uint16_t>> win_k_, win_v_;
  std::vector<int64_t> n_;
  const std::vector<std::vector<float>>& tables_;  // shared_->tables
  const RopeTable& rope_;                          // shared_->rope
};

}  // namespace

std::unique_ptr<KvCache> MakeCqCache(CodebookSet codebooks, const KvShape& shape, int window,
                                     const std::string& spec, bool fast_scan) {
  CheckCodebooksFit(codebooks, shape, spec);
  return std::make_unique<CqKvCache>(MakeCqShared(std::move(codebooks), shape, spec), shape, window,
                                     spec, fast_scan);
}

std::unique_ptr<KvCache> MakeCqCache(const KvSpec& spec, const KvShape& shape) {
  CQKV_CHECK(spec.family == KvFamily::kCq, "KV format '{}' is not a cq format", spec.text);
  CodebookSet set = LoadCodebooks(spec.path);
  CheckCodebooksFit(set, shape, spec.path);
  // The fast-scan flag is not a KvSpec field: it is re-read from the text (ParseKvSpec accepted
  // it).
  return std::make_unique<CqKvCache>(MakeCqShared(std::move(set), shape, spec.text), shape,
                                     std::max(0, spec.window), spec.text,
                                     ParseCqSpec(spec.text).fast_scan);
}

}  // namespace cqkv
