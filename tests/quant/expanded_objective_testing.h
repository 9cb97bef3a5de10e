// The objective of a codebook given as its expanded centroid table, by brute force in double:
// the check, independent of the SIMD assignment the fits use, for the tests of the
// sum-of-basis-rows fits (additive_test.cc, residual_test.cc).
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

namespace cqkv::testing {

// Weighted mean squared distance of each row of x (n, d) to its nearest row of centroids
// (k, d); w has n entries or is empty (uniform).
inline double NearestCentroidObjective(const std::vector<float>& x, const std::vector<float>& w,
                                       int d, const std::vector<float>& centroids) {
  const size_t n = x.size() / d, k = centroids.size() / d;
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    double best = 1e300;
    for (size_t c = 0; c < k; ++c) {
      double s = 0;
      for (int j = 0; j < d; ++j) s += std::pow(double(x[i * d + j]) - centroids[c * d + j], 2);
      best = std::min(best, s);
    }
    const double wi = w.empty() ? 1.0 : w[i];
    num += wi * best;
    den += wi;
  }
  return num / den;
}

}  // namespace cqkv::testing
