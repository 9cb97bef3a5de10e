#include "util/thread_pool.h"

#include <gtest/gtest.h>
#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "util/error.h"

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

// The address-space limit test below cannot run under the sanitizers (ASan reserves terabytes
// of address space for its shadow memory), so its helper is left out there too: unused, it warns.
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__) && !defined(CQKV_SANITIZE)
// Virtual memory in use now (from /proc/self/statm), to cap the address space just above it.
rlim_t CurrentVmBytes() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  unsigned long pages = 0;
  if (f != nullptr) {
    if (std::fscanf(f, "%lu", &pages) != 1) pages = 0;
    std::fclose(f);
  }
  return static_cast<rlim_t>(pages) * static_cast<rlim_t>(sysconf(_SC_PAGESIZE));
}

// Thread creation failing part-way (here: 64 MiB stacks in an address space with room for a
// few) must be a cqkv::Error, not std::terminate on joinable threads or a pool that waits for
// workers that never started. Runs in a child process: the limits are process-wide.
TEST(ThreadPoolDeathTest, ThreadCreationFailureIsACleanError) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  auto child = [] {
    alarm(30);  // a deadlock fails the test instead of hanging it
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, size_t{64} << 20);
    pthread_setattr_default_np(&attr);
    struct rlimit lim = {};
    lim.rlim_cur = lim.rlim_max = CurrentVmBytes() + (rlim_t{320} << 20);
    setrlimit(RLIMIT_AS, &lim);
    try {
      ThreadPool pool(256);
      std::fprintf(stderr, "no error\n");
      _exit(3);
    } catch (const Error& e) {
      std::fprintf(stderr, "%s\n", e.what());
      _exit(std::string(e.what()).find("cannot start 256 worker threads") != std::string::npos ? 0
                                                                                               : 4);
    }
  };
  EXPECT_EXIT(child(), ::testing::ExitedWithCode(0), "cannot start 256 worker threads");
}
#endif

TEST(ThreadPool, MaxThreadsIsFourTimesTheHardware) {
  EXPECT_EQ(ThreadPool::MaxThreads(),
            4 * static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
}

}  // namespace
}  // namespace cqkv
