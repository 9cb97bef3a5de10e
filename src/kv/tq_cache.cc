#include "kv/tq_cache.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <span>
#include <vector>

#include "kernels/attn_dense.h"
#include "kernels/hadamard.h"
#include "kernels/ops.h"
#include "kv/decode_attention.h"
#include "kv/group_quant.h"
#include "kv/page_layout.h"
#include "kv/rotated_heads.h"
#include "kv/tq_lloyd_max.h"
#include "kv/tq_qjl.h"
#include "util/error.h"
#include "util/fp16.h"

namespace cqkv {
namespace {

// Fixed seeds: every run and every sibling cache rotates and sketches alike.
constexpr uint64_t kRotationSeed = 0x7451'0001;
constexpr uint64_t kSketchSeed = 0x7451'0002;
// Rows decoded per block of AttendPartial (its scratch stays in L1/L2).
constexpr int64_t kBlockRows = 64;

// Read-only state shared by a cache and its siblings.
struct TqTables {
  int dim = 0;
  int bits_k = 0, bits_v = 0;
  bool qjl = false;
  std::vector<float> levels_k, levels_v;  // N(0, 1) Lloyd-Max levels
  LloydMaxTable table_k, table_v;
  HeadRotation rotation;
  std::unique_ptr<QjlSketch> sketch;  // :qjl only

  TqTables(const KvShape& shape, int bits, bool with_qjl)
      : dim(shape.head_dim),
        bits_k(with_qjl ? bits - 1 : bits),
        bits_v(bits),
        qjl(with_qjl),
        table_k(LloydMaxGaussian(bits_k)),
        table_v(LloydMaxGaussian(bits_v)),
        rotation(shape.n_layers, shape.head_dim, kRotationSeed) {
    levels_k.assign(table_k.levels.begin(), table_k.levels.end());
    levels_v.assign(table_v.levels.begin(), table_v.levels.end());
    if (qjl) sketch = std::make_unique<QjlSketch>(shape.n_layers, shape.head_dim, kSketchSeed);
  }
};

// Byte layout of one key or value row.
struct RowLayout {
  int64_t code_bytes = 0, sign_bytes = 0;
  int64_t norm_offset = 0, rnorm_offset = 0;  // fp16 |x|, fp16 |r| (keys with :qjl)
  int64_t bytes = 0;

  RowLayout(int dim, int bits, bool qjl) {
    code_bytes = PackedBytes(dim, bits);
    sign_bytes = qjl ? (dim + 7) / 8 : 0;
    norm_offset = code_bytes + sign_bytes;
    rnorm_offset = norm_offset + 2;
    bytes = norm_offset + (qjl ? 4 : 2);
  }
};

uint16_t LoadU16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
void StoreU16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }

// out[c] = scale * levels[code c] for the first d / 8 * 8 codes of a B-bit packed row (code c at
// bits [c*B, c*B + B), group_quant.h); returns how many it wrote. A fixed B keeps the word load
// and the shifts constant. Each group's B bytes are read as one 4-byte word: at least 4 - B bytes
// of the same row follow its codes (a value row's fp16 norm with B >= 2; 1-bit codes are only
// :qjl keys, followed by their signs and norms), so the load stays inside the row.
template <int B>
int UnpackBy8(const uint8_t* codes, const float* levels, float scale, int d, float* out) {
  constexpr uint32_t kMask = (1u << B) - 1u;
  int c = 0;
  for (; c + 8 <= d; c += 8) {
    uint32_t w;
    std::memcpy(&w, codes + c / 8 * B, 4);
    for (int k = 0; k < 8; ++k) out[c + k] = scale * levels[(w >> (k * B)) & kMask];
  }
  return c;
}

class TqCacheImpl final : public TqCache {
 public:
  TqCacheImpl(const KvSpec& spec, const KvShape& shape, std::shared_ptr<const TqTables> tables,
              std::shared_ptr<PagePool> pool)
      : TqCache(shape, std::move(pool)),
        spec_(spec),
        t_(std::move(tables)),
        key_(t_->dim, t_->bits_k, t_->qjl),
        value_(t_->dim, t_->bits_v, false),
        key_region_(AlignUp64(shape.page_tokens * key_.bytes)),
        value_region_(AlignUp64(shape.page_tokens * value_.bytes)),
        n_(shape.n_layers, 0) {}

  std::string format() const override { return spec_.text; }
  int key_bits() const override { return t_->bits_k; }
  bool qjl() const override { return t_->qjl; }
  int64_t tokens(int layer) const override { return n_[layer]; }

  void Clear() override {
    ReleasePages();
    std::fill(n_.begin(), n_.end(), 0);
  }

  std::unique_ptr<KvCache> NewSibling(std::shared_ptr<PagePool> pool) const override {
    return std::make_unique<TqCacheImpl>(spec_, shape_, t_, std::move(pool));
  }

  int64_t PageBytes() const override {
    return int64_t{shape_.n_layers} * shape_.n_kv_heads * (key_region_ + value_region_);
  }
  int64_t SharedBytes() const override {
    return t_->rotation.bytes() + (t_->sketch ? t_->sketch->bytes() : 0);
  }
  // Every token costs the same: codes, norms (and QJL signs) of K and V rows.
  double BytesPerToken() const override {
    return double(shape_.n_layers) * shape_.n_kv_heads * double(key_.bytes + value_.bytes);
  }
  double BitsPerChannel() const override {
    return 8.0 * double(key_.bytes + value_.bytes) / (2.0 * shape_.head_dim);
  }

  void Append(int layer, const KvBlock& block) override {
    const int64_t have = n_[layer];
    CQKV_CHECK(block.pos0 == have, "kv cache {}: layer {} expected position {}, got {}", spec_.text,
               layer, have, block.pos0);
    CQKV_CHECK(have + block.k.rows <= shape_.max_tokens,
               "kv cache {}: context of {} tokens exceeds the cache capacity of {}", spec_.text,
               have + block.k.rows, shape_.max_tokens);
    if (block.k.rows > 0) EnsurePage(have + block.k.rows - 1);
    const int d = shape_.head_dim;
    for (int64_t i = 0; i < block.k.rows; ++i) {
      const int64_t t = have + i;
      for (int h = 0; h < shape_.n_kv_heads; ++h) {
        EncodeRow(layer, true, block.k.Row(i) + int64_t{h} * d, Row(layer, true, h, t));
        EncodeRow(layer, false, block.v.Row(i) + int64_t{h} * d, Row(layer, false, h, t));
      }
    }
    n_[layer] = have + block.k.rows;
  }

  void DequantHead(int layer, bool key, int64_t t, int kvh, float* out) const override {
    const int d = shape_.head_dim;
    float z[kMaxHeadDim], w[kMaxHeadDim];
    DecodeRow(key, Row(layer, key, kvh, t), out, key && t_->qjl ? z : nullptr);
    if (key && t_->qjl) {
      t_->sketch->ProjectTransposed(layer, z, w);
      for (int c = 0; c < d; ++c) out[c] += w[c];
    }
    t_->rotation.Inverse(layer, out, 1);
  }

  void Attend(int layer, ConstMat q, int64_t pos0, Mat out, ThreadPool& pool) const override {
    CQKV_CHECK(pos0 + q.rows <= n_[layer], "kv cache {}: attending past the cached tokens",
               spec_.text);
    if (q.rows == 1) {
      const DecodeSeq seq{this, pos0 + 1};
      DecodeAttention(std::span(&seq, 1), layer, q, out, pool);
      return;
    }
    // Prefill: one AttendPartial per (query, KV head) over its causal prefix, so the keys are
    // decoded once per query for every query head of the group (GQA).
    const int d = shape_.head_dim, group = shape_.n_heads / shape_.n_kv_heads;
    const float scale = 1.0f / std::sqrt(static_cast<float>(d));
    pool.ParallelFor(q.rows * shape_.n_kv_heads, 1, [&](int64_t b, int64_t e, int) {
      std::vector<float> qg(size_t(group) * d), acc(qg.size()), m(group), l(group);
      for (int64_t task = b; task < e; ++task) {
        const int64_t i = task / shape_.n_kv_heads;
        const int kvh = static_cast<int>(task % shape_.n_kv_heads);
        const float* src = q.Row(i) + int64_t{kvh} * group * d;
        for (size_t c = 0; c < qg.size(); ++c) qg[c] = src[c] * scale;
        AttendPartial(layer, kvh, qg.data(), group, 0, pos0 + i + 1, m.data(), l.data(),
                      acc.data());
        float* dst = out.Row(i) + int64_t{kvh} * group * d;
        for (int h = 0; h < group; ++h) {
          const float inv = 1.0f / l[h];
          for (int c = 0; c < d; ++c) dst[h * d + c] = acc[size_t(h) * d + c] * inv;
        }
      }
    });
  }

  bool HasAttendPartial() const override { return true; }

  // Scores are taken in the rotated domain, (Rq).(R k) = q.k, and with :qjl the sketches need
  // S(Rq): the prepared query is Rq (group, d), then S(Rq) (group, d) with :qjl.
  int64_t PreparedQueryFloats(int, int group) const override {
    return int64_t{group} * shape_.head_dim * (t_->qjl ? 2 : 1);
  }
  void PrepareQuery(int layer, int, const float* q_group, int group,
                    float* prepared) const override {
    const int64_t d = shape_.head_dim, n = group * d;
    std::copy_n(q_group, n, prepared);
    t_->rotation.Forward(layer, prepared, group);
    if (!t_->qjl) return;
    for (int h = 0; h < group; ++h) {
      t_->sketch->Project(layer, prepared + h * d, prepared + n + h * d);
    }
  }

  void AttendPartial(int layer, int kvh, const float* q_group, int group, int64_t t0, int64_t t1,
                     float* m, float* l, float* acc) const override {
    std::vector<float> prepared(static_cast<size_t>(PreparedQueryFloats(layer, group)));
    PrepareQuery(layer, kvh, q_group, group, prepared.data());
    AttendPartialPrepared(layer, kvh, prepared.data(), group, t0, t1, m, l, acc);
  }

  void AttendPartialPrepared(int layer, int kvh, const float* prepared, int group, int64_t t0,
                             int64_t t1, float* m, float* l, float* acc) const override {
    const int d = shape_.head_dim;
    const AttnState s{m, l, acc, group, d};
    ResetAttnState(s);
    const float* qr = prepared;
    const float* qs = prepared + int64_t{group} * d;  // :qjl only
    std::vector<float> k(size_t(kBlockRows) * d), v(k.size()), z(t_->qjl ? k.size() : 0),
        scores(size_t(group) * kBlockRows);
    for (int64_t b0 = t0; b0 < t1; b0 += kBlockRows) {
      const int64_t n = std::min(kBlockRows, t1 - b0);
      for (int64_t i = 0; i < n; ++i) {
        DecodeRow(true, Row(layer, true, kvh, b0 + i), &k[size_t(i) * d],
                  t_->qjl ? &z[size_t(i) * d] : nullptr);
        DecodeRow(false, Row(layer, false, kvh, b0 + i), &v[size_t(i) * d], nullptr);
      }
      if (!t_->qjl) {
        DenseAttendF32(qr, k.data(), v.data(), d, n, s);
        continue;
      }
      // score = <Rq, k_mse> + |r| sqrt(pi/2)/d <S Rq, z>: z rows already carry the scale.
      for (int h = 0; h < group; ++h) {
        for (int64_t i = 0; i < n; ++i) {
          scores[size_t(h) * n + i] = Dot(qr + size_t(h) * d, &k[size_t(i) * d], d) +
                                      Dot(qs + size_t(h) * d, &z[size_t(i) * d], d);
        }
      }
      SoftmaxBlock(s, scores.data(), n);
      for (int h = 0; h < group; ++h) {
        for (int64_t i = 0; i < n; ++i) {
          Axpy(scores[size_t(h) * n + i], &v[size_t(i) * d], acc + int64_t{h} * d, d);
        }
      }
    }
    t_->rotation.Inverse(layer, acc, group);
  }

 private:
  // The row of token t (held page) for (layer, K/V, kvh).
  uint8_t* Row(int layer, bool key, int kvh, int64_t t) const {
    const int64_t page_tokens = shape_.page_tokens;
    const int64_t offset =
        (int64_t{layer} * shape_.n_kv_heads + kvh) * (key_region_ + value_region_) +
        (key ? 0 : key_region_);
    return PageData(t / page_tokens) + offset + (t % page_tokens) * (key ? key_ : value_).bytes;
  }

  void EncodeRow(int layer, bool key, const float* x, uint8_t* dst) const {
    const int d = shape_.head_dim;
    const RowLayout& rl = key ? key_ : value_;
    const LloydMaxTable& table = key ? t_->table_k : t_->table_v;
    const int bits = key ? t_->bits_k : t_->bits_v;
    std::memset(dst, 0, static_cast<size_t>(rl.bytes));
    double sq = 0;
    for (int c = 0; c < d; ++c) sq += double(x[c]) * x[c];
    const uint16_t norm16 = F32ToF16(static_cast<float>(std::sqrt(sq)));
    StoreU16(dst + rl.norm_offset, norm16);
    const float norm = F16ToF32(norm16);
    float y[kMaxHeadDim];
    const float inv = sq > 0 ? static_cast<float>(1.0 / std::sqrt(sq)) : 0.0f;
    for (int c = 0; c < d; ++c) y[c] = x[c] * inv;
    t_->rotation.Forward(layer, y, 1);
    const double sqrt_d = std::sqrt(double(d));
    float r[kMaxHeadDim];
    double rsq = 0;
    for (int c = 0; c < d; ++c) {
      const uint32_t code = table.Code(y[c] * sqrt_d);
      PutCode(dst, c, bits, code);
      // Residual in the rotated domain at the stored norm's scale.
      r[c] = norm * (y[c] - static_cast<float>(table.levels[code] / sqrt_d));
      rsq += double(r[c]) * r[c];
    }
    if (key && t_->qjl) {
      t_->sketch->Signs(layer, r, dst + rl.code_bytes);
      StoreU16(dst + rl.rnorm_offset, F32ToF16(static_cast<float>(std::sqrt(rsq))));
    }
  }

  // The rotated-domain reconstruction of a row into out (d); for :qjl keys also the sketch as
  // floats, scaled so that <S Rq, z> is the residual estimate.
  void DecodeRow(bool key, const uint8_t* src, float* out, float* z) const {
    const int d = shape_.head_dim;
    const RowLayout& rl = key ? key_ : value_;
    const std::vector<float>& levels = key ? t_->levels_k : t_->levels_v;
    const int bits = key ? t_->bits_k : t_->bits_v;
    const float scale = F16ToF32(LoadU16(src + rl.norm_offset)) / std::sqrt(float(d));
    // Eight codes at a time from one little-endian word of `bits` bytes (the hot decode loop);
    // head_dim is a power of two, so only head_dim < 8 takes the per-code path.
    int c = 0;
    switch (bits) {
      case 1:
        c = UnpackBy8<1>(src, levels.data(), scale, d, out);
        break;
      case 2:
        c = UnpackBy8<2>(src, levels.data(), scale, d, out);
        break;
      case 3:
        c = UnpackBy8<3>(src, levels.data(), scale, d, out);
        break;
      case 4:
        c = UnpackBy8<4>(src, levels.data(), scale, d, out);
        break;
      default:
        break;
    }
    for (; c < d; ++c) out[c] = scale * levels[GetCode(src, c, bits)];
    if (z != nullptr) {
      const float rnorm = F16ToF32(LoadU16(src + rl.rnorm_offset));
      t_->sketch->SignsToFloats(src + rl.code_bytes,
                                rnorm * static_cast<float>(t_->sketch->EstimatorScale()), z);
    }
  }

  KvSpec spec_;
  std::shared_ptr<const TqTables> t_;
  RowLayout key_, value_;
  int64_t key_region_, value_region_;  // bytes per page, multiples of 64
  std::vector<int64_t> n_;             // tokens per layer
};

}  // namespace

std::unique_ptr<TqCache> MakeTqCache(const KvSpec& spec, const KvShape& shape) {
  CQKV_CHECK(spec.family == KvFamily::kTq, "KV format '{}' is not a tq format", spec.text);
  CQKV_CHECK(shape.head_dim <= TqCache::kMaxHeadDim,
             "KV format '{}': head_dim {} is over the supported {}", spec.text, shape.head_dim,
             TqCache::kMaxHeadDim);
  CheckHadamardSize(shape.head_dim, fmt::format("KV format '{}'", spec.text));
  auto tables = std::make_shared<const TqTables>(shape, spec.bits, spec.qjl);
  return std::make_unique<TqCacheImpl>(spec, shape, std::move(tables), nullptr);
}

}  // namespace cqkv
