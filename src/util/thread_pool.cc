#include "util/thread_pool.h"

#include <algorithm>
#include <exception>
#include <system_error>

#include "util/error.h"

namespace cqkv {

int ThreadPool::MaxThreads() {
  return 4 * static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

ThreadPool::ThreadPool(int n_threads) {
  if (n_threads <= 0)
    n_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  n_threads_ = n_threads;
  workers_.reserve(static_cast<size_t>(n_threads_ - 1));
  for (int i = 1; i < n_threads_; ++i) {
    try {
      workers_.emplace_back([this, i] { WorkerLoop(i); });
    } catch (const std::system_error& e) {
      // The destructor will not run for a half-built pool: stop and join what started here,
      // or the joinable threads would terminate the process (and ParallelFor would wait for
      // workers that do not exist).
      const size_t started = workers_.size();
      StopWorkers();
      Fail("cannot start {} worker threads (the system refused after {}: {}); use fewer threads",
           n_threads_, started + 1, e.what());
    }
  }
}

ThreadPool::~ThreadPool() { StopWorkers(); }

void ThreadPool::StopWorkers() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_start_.notify_all();
  for (auto& t : workers_) t.join();
  workers_.clear();
}

namespace {
// Polls before blocking: decode issues a ParallelFor per matrix and per attention layer, each a
// few tens of microseconds, and waking a thread blocked on a condition variable costs about as
// much (more in a VM). ~20-50 us of polling, then the thread sleeps, so idle pools cost nothing.
constexpr int kSpinPolls = 1 << 14;

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  std::this_thread::yield();
#endif
}
}  // namespace

void ThreadPool::WorkerLoop(int id) {
  int64_t seen = 0;
  for (;;) {
    for (int i = 0; i < kSpinPolls && generation_.load(std::memory_order_acquire) == seen; ++i)
      CpuRelax();
    const std::function<void(int)>* job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_start_.wait(lock, [&] { return stop_ || generation_.load() != seen; });
      if (stop_) return;
      seen = generation_.load();
      job = job_;
    }
    (*job)(id);
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      // Under the lock: the caller tests pending_ under it before sleeping, so it cannot miss this.
      std::lock_guard<std::mutex> lock(mu_);
      cv_done_.notify_one();
    }
  }
}

void ThreadPool::ParallelFor(int64_t n, int64_t grain,
                             const std::function<void(int64_t, int64_t, int)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  const int64_t max_chunks = (n + grain - 1) / grain;
  const int n_used = static_cast<int>(std::min<int64_t>(n_threads_, max_chunks));
  if (n_used <= 1) {
    fn(0, n, 0);
    return;
  }
  std::exception_ptr error;
  std::mutex error_mu;
  const std::function<void(int)> job = [&](int id) {
    if (id >= n_used) return;
    const int64_t begin = n * id / n_used;
    const int64_t end = n * (id + 1) / n_used;
    try {
      fn(begin, end, id);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mu);
      if (!error) error = std::current_exception();
    }
  };
  {
    std::lock_guard<std::mutex> lock(mu_);
    job_ = &job;
    pending_.store(n_threads_ - 1);
    generation_.fetch_add(1, std::memory_order_release);
  }
  cv_start_.notify_all();
  job(0);
  for (int i = 0; i < kSpinPolls && pending_.load(std::memory_order_acquire) != 0; ++i) CpuRelax();
  {
    std::unique_lock<std::mutex> lock(mu_);
    cv_done_.wait(lock, [&] { return pending_.load() == 0; });
    job_ = nullptr;
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace cqkv
