// Fixtures shared by the calibration tests (calibrate_test.cc, calibrate_additive_test.cc): a
// deterministic token stream, the small calibration run several tests start from, and the check
// that streamed calibration gives the same codebooks whether its rows stay in memory or spill.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
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

// Calibrates `model` with its rows kept in memory and again spilled to files (opt.spill_dir =
// the test's temp folder) and expects both to give `want` (the test's independent reference)
// bit for bit, centroids and objectives: spilling keeps every row's float and order. Returns
// the spilled run's stats for the test's byte counts.
inline CalibrationStats ExpectInMemoryAndSpilledGive(const CodebookSet& want, const Model& model,
                                                     const std::vector<int32_t>& tokens,
                                                     CalibrationOptions opt, ThreadPool& pool) {
  opt.spill_dir.clear();
  const CodebookSet in_memory = Calibrate(model, tokens, opt, pool);
  opt.spill_dir = ::testing::TempDir();
  CalibrationStats stats;
  const CodebookSet spilled = Calibrate(model, tokens, opt, pool, nullptr, &stats);
  for (const CodebookSet* got : {&in_memory, &spilled}) {
    const char* how = got == &spilled ? "spilled" : "in memory";
    EXPECT_EQ(got->centroids.size(), want.centroids.size()) << how;
    for (size_t lk = 0; lk < std::min(got->centroids.size(), want.centroids.size()); ++lk) {
      EXPECT_EQ(got->centroids[lk], want.centroids[lk]) << how << ", (layer, kind) " << lk;
      EXPECT_EQ(got->objective[lk], want.objective[lk]) << how << ", (layer, kind) " << lk;
    }
  }
  return stats;
}

}  // namespace cqkv::testing
