#include "kv/decode_attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/attn_dense.h"
#include "util/error.h"

namespace cqkv {

void DecodeAttention(std::span<const DecodeSeq> seqs, int layer, ConstMat q, Mat out,
                     ThreadPool& pool, const DecodeOptions& options) {
  const int64_t B = static_cast<int64_t>(seqs.size());
  if (B == 0) return;
  const KvShape& shape = seqs[0].cache->shape();
  const int hd = shape.head_dim, n_kv = shape.n_kv_heads;
  const int group = shape.n_heads / n_kv;
  CQKV_CHECK(q.rows == B && out.rows == B && q.cols == shape.q_dim(),
             "decode attention: {} queries of {} for {} sequences of q_dim {}", q.rows, q.cols, B,
             shape.q_dim());
  int64_t max_ctx = 0;
  for (const DecodeSeq& s : seqs) {
    CQKV_CHECK(s.cache->shape().q_dim() == shape.q_dim() && s.cache->shape().n_kv_heads == n_kv,
               "decode attention: sequences of different shapes");
    CQKV_CHECK(s.n_ctx >= 1 && s.n_ctx <= s.cache->tokens(layer),
               "decode attention: context of {} tokens but {} cached", s.n_ctx,
               s.cache->tokens(layer));
    max_ctx = std::max(max_ctx, s.n_ctx);
  }
  // Block size: about 4 work units per thread, at least kMinBlockTokens; a whole
  // (sequence, KV head) is one unit when the batch alone gives enough units.
  int64_t block = options.block_tokens;
  if (block <= 0) {
    const int64_t want = 4 * std::max(1, pool.size());
    const int64_t splits = std::max<int64_t>(1, (want + B * n_kv - 1) / (B * n_kv));
    block = std::max(DecodeOptions::kMinBlockTokens, (max_ctx + splits - 1) / splits);
    // Multiples of 256 tokens: ranges then start on the token groups of grouped formats
    // (int<B>-channel reads its codes in place only from a group's first token) and on KV page
    // boundaries (pages are multiples of 256 tokens). A range may still span several pages:
    // AttendPartial splits it by page itself, so nothing here assumes contiguous storage.
    block = (block + 255) / 256 * 256;
  }
  // Work units in (sequence, KV head, block) order; unit_begin[b * n_kv + h] indexes the first.
  std::vector<int64_t> unit_begin(static_cast<size_t>(B * n_kv + 1), 0);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n_blocks = (seqs[b].n_ctx + block - 1) / block;
    for (int h = 0; h < n_kv; ++h) {
      unit_begin[b * n_kv + h + 1] = unit_begin[b * n_kv + h] + n_blocks;
    }
  }
  const int64_t n_units = unit_begin.back();
  // Per unit: m (group), l (group), acc (group, hd).
  const int64_t unit_floats = 2 * group + int64_t{group} * hd;
  std::vector<float> states(static_cast<size_t>(n_units * unit_floats));
  // Queries scaled and prepared (KvCache::PrepareQuery: a rotated format rotates them) once per
  // (sequence, KV head), not once per unit; pair p's prepared query starts at prep_begin[p].
  std::vector<int64_t> prep_begin(static_cast<size_t>(B * n_kv + 1), 0);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t floats = seqs[b].cache->PreparedQueryFloats(layer, group);
    for (int h = 0; h < n_kv; ++h) prep_begin[b * n_kv + h + 1] = prep_begin[b * n_kv + h] + floats;
  }
  std::vector<float> prepared(static_cast<size_t>(prep_begin.back()));
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  pool.ParallelFor(B * n_kv, 1, [&](int64_t p0, int64_t p1, int) {
    std::vector<float> qs(static_cast<size_t>(group) * hd);
    for (int64_t pair = p0; pair < p1; ++pair) {
      const int64_t b = pair / n_kv;
      const float* src = q.Row(b) + (pair % n_kv) * group * hd;
      for (size_t j = 0; j < qs.size(); ++j) qs[j] = src[j] * scale;
      seqs[b].cache->PrepareQuery(layer, static_cast<int>(pair % n_kv), qs.data(), group,
                                  prepared.data() + prep_begin[pair]);
    }
  });
  auto state = [&](int64_t u) {
    float* p = states.data() + u * unit_floats;
    return AttnState{p, p + group, p + 2 * group, group, hd};
  };
  pool.ParallelFor(n_units, 1, [&](int64_t u0, int64_t u1, int) {
    for (int64_t u = u0; u < u1; ++u) {
      // Find the (sequence, head) of unit u: units of one pair are contiguous.
      const int64_t pair =
          std::upper_bound(unit_begin.begin(), unit_begin.end(), u) - unit_begin.begin() - 1;
      const int64_t b = pair / n_kv;
      const int h = static_cast<int>(pair % n_kv);
      const int64_t t0 = (u - unit_begin[pair]) * block;
      const int64_t t1 = std::min(seqs[b].n_ctx, t0 + block);
      const AttnState s = state(u);
      seqs[b].cache->AttendPartialPrepared(layer, h, prepared.data() + prep_begin[pair], group, t0,
                                           t1, s.m, s.l, s.acc);
    }
  });
  // Merge each pair's units in block order and normalise.
  pool.ParallelFor(B * n_kv, 1, [&](int64_t p0, int64_t p1, int) {
    for (int64_t pair = p0; pair < p1; ++pair) {
      const AttnState first = state(unit_begin[pair]);
      for (int64_t u = unit_begin[pair] + 1; u < unit_begin[pair + 1]; ++u) {
        MergeAttnState(first, state(u));
      }
      const int64_t b = pair / n_kv;
      const int h = static_cast<int>(pair % n_kv);
      for (int g = 0; g < group; ++g) {
        float* o = out.Row(b) + (int64_t{h} * group + g) * hd;
        const float inv = 1.0f / first.l[g];
        for (int j = 0; j < hd; ++j) o[j] = first.acc[int64_t{g} * hd + j] * inv;
      }
    }
  });
}

}  // namespace cqkv
