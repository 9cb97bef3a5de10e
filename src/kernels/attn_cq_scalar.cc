// The target-independent parts of the CQ attention kernels: the direct path
// (per token, read each group's centroid) and the scalar reference. The vectorised lookup path
// is in attn_cq.cc.
#include <algorithm>
#include <vector>

#include "kernels/attn_cq.h"

namespace cqkv {

// Direct path: per token, read each group's centroid (channel-major, stride 2^b). Scores of a
// block go through the exact online softmax (SoftmaxBlock) before the value pass.
void CqAttendDirect(const CqHeadView& hv, const float* q, int64_t t0, int64_t t1,
                    const AttnState& st, const CqScoreFn& score) {
  constexpr int64_t kBlock = 64;
  const int G = st.heads, hd = st.head_dim, c = hv.c;
  const int64_t k = int64_t{1} << hv.bits;
  std::vector<float> sc(static_cast<size_t>(G * kBlock));
  for (int64_t b0 = t0; b0 < t1; b0 += kBlock) {
    const int64_t bn = std::min(kBlock, t1 - b0);
    if (score) {
      score(b0, bn, sc.data());
    } else {
      for (int64_t i = 0; i < bn; ++i) {
        const uint8_t* codes;
        const int64_t base = CqTokenCodes(hv, 0, b0 + i, &codes);
        for (int h = 0; h < G; ++h) sc[h * bn + i] = 0.0f;
        for (int gi = 0; gi < hv.groups; ++gi) {
          const float* cent =
              hv.k_table + int64_t{gi} * c * k + ReadCqCode(codes, base + gi, hv.bits);
          for (int h = 0; h < G; ++h) {
            const float* qg = q + int64_t{h} * hd + gi * c;
            float s = 0;
            for (int j = 0; j < c; ++j) s += qg[j] * cent[j * k];
            sc[h * bn + i] += s;
          }
        }
      }
    }
    SoftmaxBlock(st, sc.data(), bn);
    for (int64_t i = 0; i < bn; ++i) {
      const uint8_t* codes;
      const int64_t base = CqTokenCodes(hv, 1, b0 + i, &codes);
      for (int gi = 0; gi < hv.groups; ++gi) {
        const float* cent =
            hv.v_table + int64_t{gi} * c * k + ReadCqCode(codes, base + gi, hv.bits);
        for (int h = 0; h < G; ++h) {
          float* o = st.acc + int64_t{h} * hd + gi * c;
          const float p = sc[h * bn + i];
          for (int j = 0; j < c; ++j) o[j] += p * cent[j * k];
        }
      }
    }
  }
}

void CqAttendRef(const CqHeadView& hv, const float* q, int64_t t0, int64_t t1, const AttnState& s,
                 const CqScoreFn& score) {
  const int G = s.heads, hd = s.head_dim, c = hv.c;
  const int64_t k = int64_t{1} << hv.bits;
  std::vector<float> key(hd), val(hd), sc(G);
  for (int64_t t = t0; t < t1; ++t) {
    const uint8_t *kcodes, *vcodes;
    const int64_t base = CqTokenCodes(hv, 0, t, &kcodes);
    CqTokenCodes(hv, 1, t, &vcodes);
    for (int gi = 0; gi < hv.groups; ++gi) {
      const uint32_t kc = ReadCqCode(kcodes, base + gi, hv.bits);
      const uint32_t vc = ReadCqCode(vcodes, base + gi, hv.bits);
      for (int j = 0; j < c; ++j) {
        key[gi * c + j] = hv.k_table[(int64_t{gi} * c + j) * k + kc];
        val[gi * c + j] = hv.v_table[(int64_t{gi} * c + j) * k + vc];
      }
    }
    if (score) {
      score(t, 1, sc.data());
    } else {
      for (int h = 0; h < G; ++h) {
        double dot = 0;
        for (int j = 0; j < hd; ++j) dot += double(q[int64_t{h} * hd + j]) * key[j];
        sc[h] = static_cast<float>(dot);
      }
    }
    SoftmaxBlockRef(s, sc.data(), 1);
    for (int h = 0; h < G; ++h) {
      for (int j = 0; j < hd; ++j) s.acc[int64_t{h} * hd + j] += sc[h] * val[j];
    }
  }
}

}  // namespace cqkv
