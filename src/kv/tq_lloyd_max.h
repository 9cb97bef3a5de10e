// Lloyd-Max scalar quantisers for the standard normal density, the per-coordinate codebooks of
// the TurboQuant-style `tq<B>` KV format: after a random rotation each coordinate of a unit vector
// in d dimensions is close to N(0, 1/d), so the format scales these N(0, 1) tables by 1/sqrt(d).
// Computed in code (Lloyd's iteration with closed-form conditional means), not tabulated.
#pragma once

#include <cstdint>
#include <vector>

namespace cqkv {

struct LloydMaxTable {
  std::vector<double> levels;      // 2^bits reconstruction levels, ascending, symmetric about 0
  std::vector<double> thresholds;  // 2^bits - 1 decision boundaries: midpoints of the levels
  double mse = 0;                  // E[(X - Q(X))^2] for X ~ N(0, 1)

  // Index of the level nearest to x (the cell of x).
  uint32_t Code(double x) const;
};

// The optimal `bits`-bit (1..8) quantiser of N(0, 1), iterated from equal-probability cells until
// no level moves by more than 1e-12. Throws cqkv::Error for other widths.
LloydMaxTable LloydMaxGaussian(int bits);

}  // namespace cqkv
