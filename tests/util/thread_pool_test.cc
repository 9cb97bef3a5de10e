#include "util/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

namespace cqkv {
namespace {

TEST(ThreadPool, CoversEveryIndexExactlyOnce) {
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 5, 97, 1000}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      pool.ParallelFor(n, 1, [&](int64_t b, int64_t e, int tid) {
        EXPECT_LT(tid, threads);
        for (int64_t i = b; i < e; ++i) hits[i]++;
      });
      for (int64_t i = 0; i < n; ++i) EXPECT_EQ(hits[i].load(), 1) << "n=" << n << " i=" << i;
    }
  }
}

TEST(ThreadPool, GrainLimitsChunks) {
  ThreadPool pool(4);
  std::atomic<int> calls{0};
  pool.ParallelFor(10, 8, [&](int64_t, int64_t, int) { calls++; });
  EXPECT_EQ(calls.load(), 2);  // ceil(10 / 8) chunks at most
}

TEST(ThreadPool, RethrowsWorkerException) {
  ThreadPool pool(3);
  EXPECT_THROW(pool.ParallelFor(30, 1,
                                [&](int64_t b, int64_t, int) {
                                  if (b > 0) throw std::runtime_error("boom");
                                }),
               std::runtime_error);
  // The pool stays usable afterwards.
  std::atomic<int> sum{0};
  pool.ParallelFor(30, 1, [&](int64_t b, int64_t e, int) { sum += static_cast<int>(e - b); });
  EXPECT_EQ(sum.load(), 30);
}

// Back-to-back jobs hand over while workers poll; jobs after a pause find them asleep on the
// condition variable. Both paths must run every chunk of every job exactly once.
TEST(ThreadPool, ManyJobsWhilePollingAndAfterSleeping) {
  ThreadPool pool(3);
  int64_t total = 0;
  for (int job = 0; job < 2000; ++job) {
    std::atomic<int64_t> sum{0};
    pool.ParallelFor(12, 1, [&](int64_t b, int64_t e, int) {
      for (int64_t i = b; i < e; ++i) sum += i;
    });
    total += sum.load();
    if (job % 500 == 499) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(total, 2000 * 66);
}

}  // namespace
}  // namespace cqkv
