#include "util/process_stats.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

namespace cqkv {
namespace {

// The peak is a high-water mark in bytes: not below the current resident set, which includes
// memory just touched. The kernel folds per-thread RSS counters into the high-water mark lazily
// (observed ~0.2 MiB behind), hence 1 MiB of slack; a KiB/bytes mix-up would be 1024x off.
TEST(ProcessStats, PeakRssIsInBytesAndCoversWhatIsResident) {
  std::vector<char> block(size_t{48} << 20);
  std::memset(block.data(), 1, block.size());  // resident only once written
  const double now = CurrentRssBytes(), peak = PeakRssBytes();
  EXPECT_GT(now, 48.0 * (1 << 20));
  EXPECT_GE(peak, now - (1 << 20));
  EXPECT_LT(peak, 1e12);
  EXPECT_EQ(block[block.size() - 1], 1);
}

}  // namespace
}  // namespace cqkv
