// A fixed pool of worker threads with a blocking ParallelFor. Passed explicitly to whatever needs
// threads (no global pool), so `-t N` means exactly N threads of compute.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace cqkv {

class ThreadPool {
 public:
  // n_threads <= 0 means all hardware threads. The calling thread is worker 0. Throws
  // cqkv::Error (after joining the workers already started) when the system cannot create
  // the threads.
  explicit ThreadPool(int n_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // The most threads a user may ask for: 4x the hardware threads. More only adds contention
  // and, in the thousands, fails thread creation; the tools check -t against it.
  static int MaxThreads();

  // Calls fn(begin, end, thread) over [0, n) split into contiguous chunks of at least `grain`
  // items, one chunk per thread at most; returns when all are done. Exceptions thrown by fn are
  // rethrown here (the first one).
  void ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t, int)>& fn);

 private:
  void WorkerLoop(int id);
  void StopWorkers();

  int n_threads_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_start_;
  std::condition_variable cv_done_;
  const std::function<void(int)>* job_ = nullptr;  // written under mu_ before generation_
  std::atomic<int64_t> generation_{0};  // bumped under mu_ per job; polled, then waited on
  std::atomic<int> pending_{0};         // workers still running the current job
  bool stop_ = false;
};

}  // namespace cqkv
