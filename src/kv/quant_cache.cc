#include "kv/quant_cache.h"

#include <fmt/ranges.h>
#include <algorithm>
#include <charconv>
#include <span>
#include <vector>

#include "kernels/attn_dense.h"
#include "kernels/ops.h"
#include "kv/attention.h"
#include "kv/decode_attention.h"
#include "util/error.h"

namespace cqkv {

QuantKvCache::QuantKvCache(const std::string& spec, const KvShape& shape,
                           std::shared_ptr<PagePool> pool,
                           std::shared_ptr<const HeadRotation> rotation)
    : KvCache(shape, std::move(pool)), spec_(spec), rotation_(std::move(rotation)) {
  CQKV_CHECK(shape.head_dim > 0 && shape.head_dim <= kMaxHeadDim,
             "KV format '{}': head_dim {} is outside the supported 1..{}", spec, shape.head_dim,
             kMaxHeadDim);
}

void QuantKvCache::CheckAppend(int layer, const KvBlock& block) {
  const int64_t have = tokens(layer);
  CQKV_CHECK(block.pos0 == have, "kv cache: layer {} expected position {}, got {}", layer, have,
             block.pos0);
  CQKV_CHECK(have + block.k.rows <= shape_.max_tokens,
             "kv cache: context of {} tokens exceeds the cache capacity of {}", have + block.k.rows,
             shape_.max_tokens);
  if (block.k.rows > 0) EnsurePage(have + block.k.rows - 1);
}

void QuantKvCache::Attend(int layer, ConstMat q, int64_t pos0, Mat out, ThreadPool& pool) const {
  CQKV_CHECK(pos0 + q.rows <= tokens(layer), "kv cache: attending past the cached tokens");
  if (q.rows == 1) {  // decode: split over token blocks (flash-decoding)
    const DecodeSeq seq{this, pos0 + 1};
    DecodeAttention(std::span(&seq, 1), layer, q, out, pool);
    return;
  }
  // Rotated rows: score with R q (q.k = Rq.Rk), then rotate the output back (R^T sum p Rv).
  std::vector<float> q_rot;
  if (rotation_) {
    q_rot.resize(static_cast<size_t>(q.rows * shape_.q_dim()));
    for (int64_t i = 0; i < q.rows; ++i) {
      std::copy_n(q.Row(i), shape_.q_dim(), q_rot.data() + i * shape_.q_dim());
      rotation_->Forward(layer, q_rot.data() + i * shape_.q_dim(), shape_.n_heads);
    }
    q = ConstMat(q_rot.data(), q.rows, shape_.q_dim());
  }
  // Dequantises each (token, head) row into stack scratch and reuses the dense dot/axpy; a
  // kernel working on the codes directly is a later optimisation.
  struct Ops {
    const QuantKvCache* cache;
    int layer;
    int hd;
    float Score(int64_t t, int kvh, const float* qh) const {
      float row[kMaxHeadDim];
      cache->DequantHead(layer, KvPart::kKey, t, kvh, row);
      return Dot(row, qh, hd);
    }
    void AddValue(int64_t t, int kvh, float p, float* o) const {
      float row[kMaxHeadDim];
      cache->DequantHead(layer, KvPart::kValue, t, kvh, row);
      Axpy(p, row, o, hd);
    }
  };
  CausalAttention(shape_, Ops{this, layer, shape_.head_dim}, q, pos0, out, pool);
  if (rotation_) {
    for (int64_t i = 0; i < q.rows; ++i) rotation_->Inverse(layer, out.Row(i), shape_.n_heads);
  }
}

void QuantKvCache::RotateRows(int layer, const float* row, float* out) const {
  std::copy_n(row, shape_.kv_dim(), out);
  if (rotation_) rotation_->Forward(layer, out, shape_.n_kv_heads);
}

void QuantKvCache::PrepareQuery(int layer, int, const float* q_group, int group,
                                float* prepared) const {
  std::copy_n(q_group, int64_t{group} * shape_.head_dim, prepared);
  if (rotation_) rotation_->Forward(layer, prepared, group);
}

void QuantKvCache::AttendPartial(int layer, int kv_head, const float* q_group, int group,
                                 int64_t t0, int64_t t1, float* m, float* l, float* acc) const {
  if (!rotation_) {
    AttendPartialPrepared(layer, kv_head, q_group, group, t0, t1, m, l, acc);
    return;
  }
  std::vector<float> q_rot(static_cast<size_t>(group) * shape_.head_dim);
  PrepareQuery(layer, kv_head, q_group, group, q_rot.data());
  AttendPartialPrepared(layer, kv_head, q_rot.data(), group, t0, t1, m, l, acc);
}

void QuantKvCache::AttendPartialPrepared(int layer, int kv_head, const float* q_group, int group,
                                         int64_t t0, int64_t t1, float* m, float* l,
                                         float* acc) const {
  const int hd = shape_.head_dim;
  const AttnState s{m, l, acc, group, hd};
  ResetAttnState(s);
  // Rotated rows: q_group is already rotated (PrepareQuery); the accumulator is rotated back at
  // the end (acc is linear in the values; m and l do not change under the rotation).
  ForEachPageRange(t0, t1, shape_.page_tokens, [&](int64_t, int64_t b, int64_t e) {
    IntRowsView kr, vr;
    if (InPlaceRows(layer, KvPart::kKey, kv_head, b, &kr) &&
        InPlaceRows(layer, KvPart::kValue, kv_head, b, &vr)) {
      IntAttend(q_group, kr, vr, e - b, s);
      return;
    }
    // On the stack (64 KiB): decode threads are pool workers with default-sized stacks.
    alignas(64) float k[kDecodeScratchFloats];
    alignas(64) float v[kDecodeScratchFloats];
    const int64_t block = kDecodeScratchFloats / hd;  // >= 16 rows since hd <= kMaxHeadDim
    for (int64_t b0 = b; b0 < e; b0 += block) {
      const int64_t n = std::min(block, e - b0);
      DequantRows(layer, KvPart::kKey, b0, n, kv_head, k);
      DequantRows(layer, KvPart::kValue, b0, n, kv_head, v);
      DenseAttendF32(q_group, k, v, hd, n, s);
    }
  });
  if (rotation_) rotation_->Inverse(layer, acc, group);
}

void QuantKvCache::ReadRows(int layer, KvPart part, int64_t t0, int64_t n, int kvh,
                            float* out) const {
  ForEachPageRange(t0, t0 + n, shape_.page_tokens, [&](int64_t, int64_t b, int64_t e) {
    DequantRows(layer, part, b, e - b, kvh, out + (b - t0) * shape_.head_dim);
  });
  // Stored rotated: back to the model's space, as ReadRows promises.
  if (rotation_) rotation_->Inverse(layer, out, n);
}

bool QuantKvCache::InPlaceRows(int, KvPart, int, int64_t, IntRowsView*) const { return false; }

void QuantKvCache::DequantRows(int layer, KvPart part, int64_t t0, int64_t n, int kvh,
                               float* out) const {
  for (int64_t i = 0; i < n; ++i) DequantHead(layer, part, t0 + i, kvh, out + i * shape_.head_dim);
}

double StorageBitsPerChannel(const KvCache& cache) {
  const KvShape& s = cache.shape();
  return cache.BytesPerToken() * 8.0 / (2.0 * s.n_layers * s.kv_dim());
}

int64_t QuantSpec::Get(char letter, int64_t fallback) const {
  const auto it = options.find(letter);
  return it == options.end() ? fallback : it->second;
}

namespace {

// A non-negative decimal below 2^31, or -1.
int64_t ParseCount(std::string_view s) {
  int64_t v = -1;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size() || v < 0 || v >= (1LL << 31)) {
    return -1;
  }
  return v;
}

}  // namespace

QuantSpec ParseQuantSpec(const std::string& spec, std::string_view allowed) {
  QuantSpec out;
  out.text = spec;
  size_t start = spec.find(':');
  out.head = spec.substr(0, start);
  while (start != std::string::npos) {
    const size_t next = spec.find(':', start + 1);
    const std::string_view opt = std::string_view(spec).substr(
        start + 1, next == std::string::npos ? std::string::npos : next - start - 1);
    CQKV_CHECK(!opt.empty() && allowed.find(opt[0]) != std::string_view::npos,
               "KV format '{}': unknown option '{}' (options of this format: {})", spec, opt,
               fmt::join(allowed, ", "));
    const int64_t v = ParseCount(opt.substr(1));
    CQKV_CHECK(v >= 0, "KV format '{}': option '{}' needs a non-negative integer after '{}'", spec,
               opt, opt[0]);
    CQKV_CHECK(out.options.emplace(opt[0], v).second, "KV format '{}': option '{}' given twice",
               spec, opt[0]);
    start = next;
  }
  return out;
}

int ParseBits(const QuantSpec& spec, std::string_view digits, std::initializer_list<int> allowed) {
  const int64_t b = ParseCount(digits);
  for (int a : allowed) {
    if (b == a) return a;
  }
  Fail("KV format '{}': '{}' is not a supported bit width (this format takes {})", spec.text,
       digits, fmt::join(allowed, ", "));
}

}  // namespace cqkv
