// The kernels' threads: a pool of its own instead of OpenMP's, so that a library needs nothing but
// the C and C++ runtimes. The wheels are built with zig's toolchain for glibc 2.17, which links
// libc++ statically and has no OpenMP runtime; the source build (g++) compiles the same code. Only
// the SIMD loops keep OpenMP pragmas (-fopenmp-simd: compile-time vectorization, no runtime).
//
// The thread count is what OpenMP would take: OMP_NUM_THREADS where it is set to a positive number
// (its first value), else one thread per CPU this process may run on (its affinity mask), as the
// user's environment says. That is Python's os.environ, not getenv(): `import mindspore` sets
// OMP_NUM_THREADS=1 in the C environment (setenv, unseen by os.environ), and a pool that read it ran
// one thread whatever the user asked. So ms_lars/_native.py, which loads every library before
// MindSpore may run it, passes the count in (SetThreadCount, exported as LarsSetThreadCount and
// LambSetThreadCount); getenv() and the affinity mask serve only where nothing was passed. The count
// is fixed when the pool is made, at a library's first kernel call. A parallel region runs on the caller (thread 0) and the
// pool's workers (1 .. threads - 1). Workers spin a little after a region, as OpenMP's do, so that
// the next call (the rewrite path makes one per layer) finds them awake; then they sleep.
#pragma once

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace ms_lars {

// The count passed in from Python (0: none passed).
inline std::atomic<int> &RequestedThreadCount() {
  static std::atomic<int> requested{0};
  return requested;
}

inline void SetThreadCount(int threads) { RequestedThreadCount().store(threads > 4096 ? 4096 : threads); }

inline int DefaultThreadCount() {
  const int passed = RequestedThreadCount().load();
  if (passed > 0) return passed;
  const char *requested = std::getenv("OMP_NUM_THREADS");
  if (requested != nullptr) {
    char *end = nullptr;
    const long n = std::strtol(requested, &end, 10);
    if (end != requested && n > 0) return n > 4096 ? 4096 : static_cast<int>(n);
  }
  cpu_set_t cpus;
  if (sched_getaffinity(0, sizeof(cpus), &cpus) == 0) {
    const int n = CPU_COUNT(&cpus);
    if (n > 0) return n;
  }
  const long online = sysconf(_SC_NPROCESSORS_ONLN);
  return online > 0 ? static_cast<int>(online) : 1;
}

// Waits of a few microseconds: spin first (a busy core hands over in well under a microsecond),
// then give the core away, so that more threads than cores still make progress.
inline void Pause(int *spins) {
  if (++*spins < 2000) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
  } else {
    std::this_thread::yield();
  }
}

class ThreadPool {
 public:
  // This process's pool (one per library), made at the first call; a child made by fork() has none
  // of its parent's threads, so it makes its own.
  static ThreadPool &Get() {
    static std::mutex creating;
    static std::atomic<ThreadPool *> pool{nullptr};
    ThreadPool *current = pool.load(std::memory_order_acquire);
    if (current == nullptr || current->pid_ != getpid()) {
      std::lock_guard<std::mutex> lock(creating);
      current = pool.load(std::memory_order_relaxed);
      if (current == nullptr || current->pid_ != getpid()) {
        // Never deleted: a worker may still be spinning when the process exits.
        current = new ThreadPool(DefaultThreadCount());
        pool.store(current, std::memory_order_release);
      }
    }
    return *current;
  }

  int threads() const { return threads_; }

  // Runs task(thread) for thread = 0 .. threads() - 1, the caller being thread 0, and returns when
  // every thread has finished. Regions called from several threads at once take turns.
  void Run(const std::function<void(int)> &task) {
    if (threads_ == 1) {
      task(0);
      return;
    }
    std::lock_guard<std::mutex> region(running_);
    task_ = &task;
    remaining_.store(threads_ - 1, std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    task(0);
    int spins = 0;
    while (remaining_.load(std::memory_order_acquire) != 0) Pause(&spins);
  }

 private:
  explicit ThreadPool(int threads) : threads_(threads), pid_(getpid()) {
    for (int thread = 1; thread < threads_; ++thread) std::thread(&ThreadPool::Work, this, thread).detach();
  }

  void Work(int thread) {
    pthread_setname_np(pthread_self(), "ms_lars_pool");   // (top -H, /proc/PID/task/*/comm)
    unsigned seen = 0;
    for (;;) {
      int spins = 0;
      // About 100 us of spinning (2000 pauses, then yields) before sleeping.
      while (generation_.load(std::memory_order_acquire) == seen && spins < 2200) Pause(&spins);
      if (generation_.load(std::memory_order_acquire) == seen) {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      }
      seen = generation_.load(std::memory_order_acquire);
      (*task_)(thread);
      remaining_.fetch_sub(1, std::memory_order_acq_rel);
    }
  }

  const int threads_;
  const pid_t pid_;
  std::mutex running_;    // one region at a time
  std::mutex mutex_;      // guards the sleepers' wake-up
  std::condition_variable wake_;
  std::atomic<unsigned> generation_{0};
  std::atomic<int> remaining_{0};
  const std::function<void(int)> *task_ = nullptr;
};

// Runs body(thread, threads) on every thread of the pool.
template <typename Body>
void Parallel(Body body) {
  ThreadPool &pool = ThreadPool::Get();
  const int threads = pool.threads();
  pool.Run([&](int thread) { body(thread, threads); });
}

}  // namespace ms_lars
