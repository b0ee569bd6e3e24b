// The worker threads of pool.h: a job is published as one 64-bit word (job id | slots | joined),
// workers take a slot by compare-and-swap, the caller closes the job when its own share is done
// and waits for the workers that joined.
#include "pool.h"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <mutex>
#include <thread>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define RFMFAST_PAUSE() _mm_pause()
#else
#define RFMFAST_PAUSE() std::this_thread::yield()
#endif

namespace rfmfast {
namespace {

// How long an idle thread polls before it blocks. It polls with sched_yield, which on an idle
// core returns at once (so the thread picks up the next job within a microsecond: waking a
// blocked thread costs tens of microseconds, more on a virtual machine, and a factorization
// runs hundreds of short jobs back to back), while on a busy core it hands the core to whatever
// else is waiting (so polling takes almost nothing from another process, or from a straggler
// of our own that the caller is waiting for).
constexpr std::chrono::microseconds SPIN{10000};
constexpr int PAUSES = 64;  // pure pause iterations before the first yield

// word = job id (32 bits) | slots offered (16) | slots taken (16)
constexpr uint64_t id_of(uint64_t w) { return w >> 32; }
constexpr uint32_t offered(uint64_t w) { return uint32_t(w >> 16) & 0xffff; }
constexpr uint32_t taken(uint64_t w) { return uint32_t(w) & 0xffff; }
constexpr uint64_t word(uint64_t id, uint32_t offer, uint32_t take) {
  return (id << 32) | (uint64_t(offer) << 16) | take;
}

// true once pred() holds, polling for SPIN; false if it still does not
template <class P>
bool spin_until(P pred) {
  for (int i = 0; i < PAUSES; ++i) {
    if (pred()) return true;
    RFMFAST_PAUSE();
  }
  const auto until = std::chrono::steady_clock::now() + SPIN;
  for (int i = 0;; ++i) {
    if (pred()) return true;
    sched_yield();
    if ((i & 15) == 15 && std::chrono::steady_clock::now() > until) return false;
  }
}

thread_local bool inside_job = false;

class Pool {
 public:
  void run(int nthreads, PoolTask task) {
    if (inside_job || nthreads <= 1) {  // (checked first: this thread may hold run_mu_)
      task.call(task.ctx, 0);
      return;
    }
    std::unique_lock<std::mutex> exclusive(run_mu_, std::try_to_lock);
    if (exclusive.owns_lock()) nthreads = available(nthreads);
    if (!exclusive.owns_lock() || nthreads <= 1) {
      task.call(task.ctx, 0);
      return;
    }
    const uint32_t workers = uint32_t(std::min(nthreads - 1, 0xffff));
    grow(workers);
    task_ = task;
    error_ = nullptr;
    finished_.store(0, std::memory_order_relaxed);
    const uint64_t id = id_of(state_.load(std::memory_order_relaxed)) + 1;
    state_.store(word(id, workers, 0), std::memory_order_release);
    {
      std::lock_guard<std::mutex> l(mu_);
    }
    wake_.notify_all();
    inside_job = true;
    std::exception_ptr mine;
    try {
      task.call(task.ctx, 0);
    } catch (...) {
      mine = std::current_exception();
    }
    inside_job = false;
    // close the job: no slot left for a worker that wakes from now on
    uint64_t w = state_.load(std::memory_order_acquire);
    while (
        !state_.compare_exchange_weak(w, word(id, taken(w), taken(w)), std::memory_order_acq_rel)) {
    }
    const uint32_t joined = taken(w);
    auto all_back = [&] { return finished_.load(std::memory_order_acquire) == joined; };
    if (!spin_until(all_back)) {
      std::unique_lock<std::mutex> l(mu_);
      done_.wait(l, all_back);
    }
    if (mine) std::rethrow_exception(mine);
    if (error_) std::rethrow_exception(error_);
  }

 private:
  // Threads worth using now: no more than the cores that other runnable threads leave free.
  // Where other work already holds the cores, a second thread of ours only shares a core with
  // it (or with our caller) and every job waits on whichever of our threads the scheduler set
  // aside: measured, two threads next to one busy process ran the ops 0.75-0.88x as fast as
  // one. The count of runnable threads (Linux: procs_running in /proc/stat, less ours: the
  // caller and the workers awake) is read at most every RECHECK; elsewhere nthreads.
  static constexpr std::chrono::milliseconds RECHECK{10};
  int available(int nthreads) {
    const auto now = std::chrono::steady_clock::now();
    if (now - checked_ >= RECHECK) {
      checked_ = now;
      const int running = procs_running();
      if (running < 0) {
        free_ = 1 << 16;  // unknown: no cap
      } else {
        const int others = std::max(0, running - 1 - awake_.load(std::memory_order_relaxed));
        free_ = std::max(1, cores_ - others);
      }
    }
    return std::min(nthreads, free_);
  }

  static int procs_running() {
    FILE* f = std::fopen("/proc/stat", "r");
    if (f == nullptr) return -1;
    char line[256];
    int n = -1;
    while (std::fgets(line, sizeof line, f) != nullptr)
      if (std::sscanf(line, "procs_running %d", &n) == 1) break;
    std::fclose(f);
    return n;
  }

  static int count_cores() {
#if defined(__linux__)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
#endif
    return int(std::max(1u, std::thread::hardware_concurrency()));
  }

  void grow(uint32_t workers) {
    while (started_ < workers) {
      std::thread(&Pool::work, this).detach();
      ++started_;
    }
  }

  void work() {
    inside_job = true;  // a kernel called from a job runs on its caller alone
    awake_.fetch_add(1, std::memory_order_relaxed);
    uint64_t seen = id_of(state_.load(std::memory_order_acquire));
    for (;;) {
      auto new_job = [&] { return id_of(state_.load(std::memory_order_acquire)) != seen; };
      if (!spin_until(new_job)) {
        std::unique_lock<std::mutex> l(mu_);
        awake_.fetch_sub(1, std::memory_order_relaxed);
        wake_.wait(l, new_job);
        awake_.fetch_add(1, std::memory_order_relaxed);
      }
      uint64_t w = state_.load(std::memory_order_acquire);
      seen = id_of(w);
      int tid = -1;
      while (taken(w) < offered(w)) {
        if (state_.compare_exchange_weak(w, w + 1, std::memory_order_acq_rel)) {
          tid = int(taken(w)) + 1;
          break;
        }
        seen = id_of(w);  // w now holds the current word, of this job or a newer one
      }
      if (tid < 0) continue;  // no slot left: wait for the next job
      try {
        task_.call(task_.ctx, tid);
      } catch (...) {
        std::lock_guard<std::mutex> l(mu_);
        if (!error_) error_ = std::current_exception();
      }
      {
        std::lock_guard<std::mutex> l(mu_);
        finished_.fetch_add(1, std::memory_order_release);
      }
      done_.notify_one();
    }
  }

  std::atomic<uint64_t> state_{0};
  std::atomic<uint32_t> finished_{0};
  PoolTask task_{};
  std::exception_ptr error_;
  std::mutex mu_, run_mu_;
  std::condition_variable wake_, done_;
  uint32_t started_ = 0;
  std::atomic<int> awake_{0};  // workers not blocked (spinning or working): runnable threads
  const int cores_ = count_cores();
  std::chrono::steady_clock::time_point checked_{};
  int free_ = 1;
};

Pool* the_pool = nullptr;
std::once_flag made;

// A forked child has none of the parent's threads: it gets a new, empty pool (the old one, whose
// mutexes a parent thread may have held, is abandoned).
void after_fork_in_child() { the_pool = new Pool; }

void make_pool() {
  the_pool = new Pool;  // never destroyed: workers may still wait on it at exit
  pthread_atfork(nullptr, nullptr, after_fork_in_child);
}

}  // namespace

void pool_run(int nthreads, PoolTask task) {
  std::call_once(made, make_pool);
  the_pool->run(nthreads, task);
}

}  // namespace rfmfast
