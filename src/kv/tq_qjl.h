// The 1-bit QJL sketch of TurboQuant's inner-product variant: a key's quantisation residual r is
// stored as z = sign(S r) (one bit per channel) plus |r|, with S a fixed d x d matrix of i.i.d.
// N(0, 1) entries, and <q, r> is estimated as |r| sqrt(pi/2) / d <S q, z>, which is unbiased over
// the draw of S (E[sign(<s, r>) <s, q>] = sqrt(2/pi) <q, r> / |r| for s ~ N(0, I)).
#pragma once

#include <cstdint>
#include <vector>

namespace cqkv {

class QjlSketch {
 public:
  // One matrix per layer, drawn from a generator seeded by (seed, layer).
  QjlSketch(int n_layers, int dim, uint64_t seed);

  // Writes sign(S r) of layer `layer` as dim bits (bit c of bytes, LSB first; 1 = non-negative).
  void Signs(int layer, const float* r, uint8_t* bits) const;
  // out <- S q (dim values): computed once per query, then dotted with every key's signs.
  void Project(int layer, const float* q, float* out) const;
  // out <- scale * (2 z - 1) for the packed signs, so that <S q, out> is the residual estimate
  // when scale = |r| * EstimatorScale().
  void SignsToFloats(const uint8_t* bits, float scale, float* out) const;
  // sqrt(pi/2) / dim.
  double EstimatorScale() const;
  // The same dim x dim entries as a key vector: out <- S^T w (for dequantised views of keys).
  void ProjectTransposed(int layer, const float* w, float* out) const;

  int dim() const { return dim_; }
  int64_t bytes() const { return static_cast<int64_t>(s_.size() * sizeof(float)); }

 private:
  int dim_;
  std::vector<float> s_;  // (n_layers, dim, dim) row-major: row i of layer l's S
};

}  // namespace cqkv
