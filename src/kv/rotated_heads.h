// The per-head orthonormal rotation of the rotated KV formats: each head's row x (head_dim
// channels, a power of two) is stored as R x with R = H D, H the normalised Walsh-Hadamard matrix
// (kernels/hadamard.h) and D a fixed diagonal of +-1 signs per layer (identity for llama.cpp-
// style `:hadamard`, seeded random for `tq<B>`). Scores are invariant, q.k = (Rq).(Rk), and an
// attention output over rotated values is rotated back with R^T = D H.
#pragma once

#include <cstdint>
#include <vector>

namespace cqkv {

class HeadRotation {
 public:
  // seed 0: D = I (plain Hadamard). Otherwise layer l's signs come from a generator seeded by
  // (seed, l), so every sibling cache and every run rotates alike. Throws cqkv::Error unless
  // head_dim is a power of two.
  HeadRotation(int n_layers, int head_dim, uint64_t seed);

  // x <- R x for `heads` consecutive rows of head_dim at x (one token's heads, or a query group).
  void Forward(int layer, float* x, int64_t heads) const;
  // x <- R^T x.
  void Inverse(int layer, float* x, int64_t heads) const;

  int head_dim() const { return head_dim_; }
  bool random_signs() const { return !signs_.empty(); }
  // Bytes of the sign tables (shared by all sequences).
  int64_t bytes() const { return static_cast<int64_t>(signs_.size() * sizeof(float)); }

 private:
  void ApplySigns(int layer, float* x, int64_t heads) const;

  int n_layers_, head_dim_;
  std::vector<float> signs_;  // (n_layers, head_dim) of +-1; empty when D = I
};

}  // namespace cqkv
