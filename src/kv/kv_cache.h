// The pluggable KV-cache interface. Every format (fp32, fp16, and the quantised ones of later
// issues) implements it, so tools and benchmarks take any format through `--kv FORMAT`.
// A format sees keys both before and after RoPE: which one it stores is its own choice.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/rope.h"
#include "kv/kv_spec.h"
#include "kv/page_pool.h"
#include "util/tensor.h"
#include "util/thread_pool.h"

namespace cqkv {

// Shape of the cache of one sequence: per layer, n_kv_heads heads of head_dim channels per token.
// A model's shape comes from KvShapeFor (model/kv_shape.h).
struct KvShape {
  int n_layers = 0;
  int n_heads = 0;  // query heads (GQA: n_heads / n_kv_heads queries share a KV head)
  int n_kv_heads = 0;
  int head_dim = 0;
  int max_tokens = 0;  // capacity; appending beyond it is an error
  // Tokens per KV page (kv/page_pool.h): a multiple of 256, the decode attention token block, so
  // a work unit's range never straddles a page unless it spans whole pages.
  int page_tokens = 256;
  // RoPE parameters, for formats that store pre-RoPE keys and must rotate them when attending.
  RopeParams rope;
  // Identity of the model (ModelFingerprint), so formats with learned parameters can refuse
  // ones learned on another model. 0 when unknown (synthetic shapes in benchmarks).
  uint64_t model_fingerprint = 0;

  int kv_dim() const { return n_kv_heads * head_dim; }
  // Index of (layer, kv_head) in storage kept per KV head, layer-major (decode attention reads
  // one KV head at a time, so every format keeps each head's rows contiguous).
  size_t HeadSlot(int layer, int kv_head) const {
    return static_cast<size_t>(layer) * n_kv_heads + kv_head;
  }
  int q_dim() const { return n_heads * head_dim; }
};

// Which half of a layer's cache: keys or values.
enum class KvPart { kKey, kValue };

// The keys and values of a block of consecutive new tokens of one layer.
struct KvBlock {
  int64_t pos0 = 0;  // absolute position of the block's first token
  ConstMat k_pre;    // (n, kv_dim) keys before RoPE
  ConstMat k;        // (n, kv_dim) keys after RoPE (what attention scores use)
  ConstMat v;        // (n, kv_dim) values
};

class KvCache {
 public:
  virtual ~KvCache();  // returns the pages to the pool

  // The spec this cache was made from, e.g. "fp16".
  virtual std::string format() const = 0;
  // Stores a block for `layer`. Blocks arrive in position order per layer:
  // block.pos0 == tokens(layer) before the call.
  virtual void Append(int layer, const KvBlock& block) = 0;
  // Causal attention for n queries q (n, n_heads*head_dim), already rotated; query i sits at
  // position pos0 + i and attends to cached positions [0, pos0 + i] (its own K/V must already
  // be appended). Writes out (n, n_heads*head_dim). Scores are scaled by 1/sqrt(head_dim).
  // A format with an exact window of recent tokens (ExactPrefillRows) reads them as they are
  // stored after the whole block, so pass it at most that many rows per Append + Attend.
  virtual void Attend(int layer, ConstMat q, int64_t pos0, Mat out, ThreadPool& pool) const = 0;
  // How many of the next tokens of `layer` one Append + Attend pair may take while every query
  // still sees the cache exactly as decoding gives it after its own token. Formats that keep
  // their most recent tokens exact (fp16 windows) drop older window rows as a block arrives, so
  // a block's early queries would see fewer exact tokens than decoding gives them: prefill feeds
  // such formats in pieces of at most this many rows (>= 1). Default: no limit.
  virtual int64_t ExactPrefillRows(int layer) const;
  // Decode building block (flash-decoding, kv/decode_attention.h): attention of the `group`
  // query heads that share `kv_head`, q_group (group, head_dim) already scaled by
  // 1/sqrt(head_dim), over cached tokens [t0, t1) only. Writes that range's softmax state:
  // m (group) max score, l (group) sum of exp(score - m), acc (group, head_dim) the
  // un-normalised sum of exp(score - m) * value; an empty range gives m = -inf, l = 0, acc = 0.
  // The default throws: formats opt in (HasAttendPartial) since only they can read their rows.
  virtual void AttendPartial(int layer, int kv_head, const float* q_group, int group, int64_t t0,
                             int64_t t1, float* m, float* l, float* acc) const;
  virtual bool HasAttendPartial() const { return false; }
  // Decode splits one query into many AttendPartial units (kv/decode_attention.h); formats that
  // transform the query before scoring (a head rotation, a sketch projection) do it once per step
  // here instead of once per unit. PrepareQuery writes PreparedQueryFloats(layer, group) floats
  // for the q_group AttendPartial would take; AttendPartialPrepared on them gives bitwise what
  // AttendPartial on q_group gives. Default: the identity (a copy) and AttendPartial.
  virtual int64_t PreparedQueryFloats(int /*layer*/, int group) const {
    return int64_t{group} * shape_.head_dim;
  }
  virtual void PrepareQuery(int layer, int kv_head, const float* q_group, int group,
                            float* prepared) const;
  virtual void AttendPartialPrepared(int layer, int kv_head, const float* prepared, int group,
                                     int64_t t0, int64_t t1, float* m, float* l, float* acc) const {
    AttendPartial(layer, kv_head, prepared, group, t0, t1, m, l, acc);
  }
  // Writes tokens [t0, t0 + n) (< tokens(layer)) of kv head kvh of `part` as attention sees them,
  // (n, head_dim) row-major, in the model's space (keys after RoPE): what lets a composite
  // (kv/mixed_cache.h) score with one format's keys and sum another format's values. The
  // default throws: formats opt in (HasReadRows).
  virtual void ReadRows(int layer, KvPart part, int64_t t0, int64_t n, int kvh, float* out) const;
  virtual bool HasReadRows() const { return false; }
  // Tokens cached in `layer`.
  virtual int64_t tokens(int layer) const = 0;
  // Drops every cached token (capacity is kept).
  virtual void Clear() = 0;
  // Exact bytes per cached token over all layers, keys and values, including per-token scales
  // and amortised side tables (codebooks are amortised over max_tokens).
  virtual double BytesPerToken() const = 0;
  // Storage bits per cached channel that grow with every token (codes plus per-token or
  // per-group scales), excluding tables shared by all sequences such as CQ codebooks and
  // full-precision windows: the "bits per channel" papers compare at. Default: all bytes.
  virtual double BitsPerChannel() const {
    return BytesPerToken() * 8.0 / (2.0 * shape_.n_layers * shape_.kv_dim());
  }

  // A new empty cache of the same format and shape, for another sequence of a batch. Read-only
  // state loaded or learned once (CQ codebooks, rotation tables) is shared with this cache, not
  // copied. Its pages come from `pool` (page_bytes() must equal PageBytes()), or from a private
  // unbounded pool when null.
  virtual std::unique_ptr<KvCache> NewSibling(std::shared_ptr<PagePool> pool = nullptr) const = 0;

  // --- Paged storage. Token t of every layer, K and V, lives in page t / page_tokens of this
  // sequence's page table; each format lays a page out as it likes (PageBytes).
  // Bytes of one page of shape().page_tokens tokens, all layers, K and V.
  virtual int64_t PageBytes() const = 0;
  // Bytes this sequence holds outside pages whatever its length (fp16 windows, a partial
  // group's staging): charged to the pool's budget by whoever admits the sequence.
  virtual int64_t FixedBytes() const { return 0; }
  // Bytes of read-only state shared by this cache and all its siblings (CQ codebooks, rotation
  // tables): charged once to a budget, whatever the number of sequences.
  virtual int64_t SharedBytes() const { return 0; }
  // Makes sure pages for tokens [0, n_tokens) are held; false (nothing changed) when the pool
  // cannot supply them. Append allocates on its own too, but throws when the pool is empty, so
  // schedulers reserve before a step.
  bool TryReserve(int64_t n_tokens);
  // TryReserve for a scheduler admitting a sequence: also charges FixedBytes() to the pool (once;
  // returned when the cache is destroyed), all or nothing.
  bool TryAdmit(int64_t n_tokens);
  int64_t pages_held() const { return static_cast<int64_t>(pages_.size()); }
  int64_t PagesFor(int64_t n_tokens) const {
    return (n_tokens + shape_.page_tokens - 1) / shape_.page_tokens;
  }
  const std::shared_ptr<PagePool>& pool() const { return pool_; }

  const KvShape& shape() const { return shape_; }

 protected:
  // pool may be null: a private unbounded pool of PageBytes() is made at the first page.
  KvCache(const KvShape& shape, std::shared_ptr<PagePool> pool);

  // The memory of page `index` (< pages_held()).
  uint8_t* PageData(int64_t index) const { return page_data_[static_cast<size_t>(index)]; }
  // Makes sure token t has its page; throws cqkv::Error (kResourceExhausted) when the pool is
  // empty. Returns the page's memory.
  uint8_t* EnsurePage(int64_t t);
  // Returns every page to the pool (Clear).
  void ReleasePages();
  // For composites (kv/mixed_cache.h) whose page holds their sub-caches' pages side by side:
  // gives `child` every page this cache holds and the child lacks, at byte `offset` of each.
  // The child reads and writes them but never allocates or frees pages (it is lent them); the
  // composite lends after each EnsurePage, before the child appends.
  void LendPages(KvCache& child, int64_t offset) const;

  KvShape shape_;

 private:
  std::shared_ptr<PagePool> pool_;
  std::vector<int32_t> pages_;       // page ids, in token order
  std::vector<uint8_t*> page_data_;  // their memory
  int64_t fixed_charged_ = 0;        // FixedBytes() charged to pool_ by TryAdmit
  bool borrowed_ = false;            // pages lent by a composite (LendPages): never freed here
};

// Calls fn(page, begin, end) for each page-aligned piece [begin, end) of tokens [t0, t1); page is
// the page index, begin/end are absolute token indices.
template <typename Fn>
void ForEachPageRange(int64_t t0, int64_t t1, int64_t page_tokens, const Fn& fn) {
  while (t0 < t1) {
    const int64_t page = t0 / page_tokens;
    const int64_t end = std::min(t1, (page + 1) * page_tokens);
    fn(page, t0, end);
    t0 = end;
  }
}

// Makes a cache from a `--kv` spec ("fp32", "fp16"). Throws cqkv::Error naming the spec when
// it is unknown or malformed.
std::unique_ptr<KvCache> MakeKvCache(const std::string& spec, const KvShape& shape);
// From a spec parsed once at the edge (kv/kv_spec.h): only shape-dependent checks remain.
std::unique_ptr<KvCache> MakeKvCache(const KvSpec& spec, const KvShape& shape);
// One line per known format, for --help.
std::string KvFormatsHelp();

}  // namespace cqkv
