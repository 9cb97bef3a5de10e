// Fixtures shared by the calibration tests (calibrate_test.cc, calibrate_additive_test.cc): a
// deterministic token stream and the small calibration run several tests start from.
#pragma once

#include <cstdint>
#include <vector>

#include "calibrate/calibrate.h"

namespace cqkv::testing {

// n tokens below `vocab`, in a fixed pattern that is neither constant nor periodic in 64.
inline std::vector<int32_t> Tokens(int n, int vocab) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) t[i] = (i * 7 + i / 5) % vocab;
  return t;
}

// 4c4b codebooks from 3 windows of 64 tokens (of a 200-token Tokens stream).
inline CalibrationOptions SmallOptions(bool fisher, KeyPosition keys) {
  CalibrationOptions opt;
  opt.config = CqConfig::Parse("4c4b");
  opt.fisher = fisher;
  opt.keys = keys;
  opt.n_seqs = 3;
  opt.seq_len = 64;
  return opt;
}

}  // namespace cqkv::testing
