// Parallel loops on rfmfast's worker pool (pool.h), for the kernels of one instruction-set
// variant. Every loop hands out its items from a shared counter, so any subset of the threads
// (the calling one at least) completes it: no barrier waits for a descheduled thread.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <utility>

#include "pool.h"

namespace rfmfast {
namespace RFMFAST_VARIANT {

// Items [0, n) handed out in chunks of `chunk` to whichever threads ask.
class Items {
 public:
  Items(int64_t n, int64_t chunk) : n_(n), chunk_(std::max<int64_t>(chunk, 1)) {}
  // the next chunk [begin, end); false once none is left
  bool next(int64_t& begin, int64_t& end) {
    const int64_t b = next_.fetch_add(chunk_, std::memory_order_relaxed);
    if (b >= n_) return false;
    begin = b;
    end = std::min(b + chunk_, n_);
    return true;
  }

 private:
  std::atomic<int64_t> next_{0};
  const int64_t n_, chunk_;
};

// f(tid) on the calling thread (tid 0) and on the workers that join, up to nthreads in all.
template <class F>
void parallel(int nthreads, F&& f) {
  typedef std::remove_reference_t<F> Fn;
  if (nthreads <= 1) {
    f(0);
    return;
  }
  pool_run(nthreads, PoolTask{[](void* ctx, int tid) { (*static_cast<Fn*>(ctx))(tid); },
                              const_cast<void*>(static_cast<const void*>(&f))});
}

// One thread's part of a parallel_for: its own function, never inlined into the caller, so that
// the compiler optimizes the loop body on its own (as OpenMP's outlined regions were) instead of
// as part of a large caller where its inlining budget runs out.
template <class Setup, class Body>
__attribute__((noinline)) void take_part(Items& items, int tid, Setup& setup, Body& body) {
  int64_t b, e;
  if (!items.next(b, e)) return;
  auto state = setup(tid);
  do {
    for (int64_t i = b; i < e; ++i) body(state, i);
  } while (items.next(b, e));
}

// Items [0, n) in chunks over up to nthreads threads. Each thread that gets a chunk first calls
// setup(tid) once (its scratch space: nothing is made by a thread that finds no work), then
// body(state, i) for every item i of its chunks, state being what setup returned.
template <class Setup, class Body>
void parallel_for(int64_t n, int nthreads, int64_t chunk, Setup&& setup, Body&& body) {
  if (n <= 0) return;
  nthreads = int(std::max<int64_t>(1, std::min<int64_t>(nthreads, (n + chunk - 1) / chunk)));
  Items items(n, chunk);
  parallel(nthreads, [&](int tid) { take_part(items, tid, setup, body); });
}

// The same with no scratch space: body(i).
template <class Body>
void parallel_for(int64_t n, int nthreads, int64_t chunk, Body&& body) {
  parallel_for(n, nthreads, chunk, [](int) { return 0; }, [&](int, int64_t i) { body(i); });
}

// The threads worth starting for a job of about `work` multiply-adds (or their equivalent in
// memory traffic): one per GRAIN of work, at most nthreads. A shorter job runs on the calling
// thread alone: sharing it would cost more in hand-offs than it saves, and on a busy machine
// every shared job risks waiting for a descheduled thread (pool.h). GRAIN, about 2-5 us of one
// core's work, was chosen by timing the Cholesky (n = 2,000, 2 threads; hundreds of jobs of all
// sizes): 2^18 and 2^20 ran it in 36-37 ms, 2^22 in 44 ms, OpenMP in 38 ms.
constexpr double GRAIN = double(1 << 18);
inline int threads_for(int nthreads, double work) {
  return int(std::max(1.0, std::min(double(nthreads), work / GRAIN)));
}

// A chunk size for n items of similar cost over nthreads threads: about `per_thread` chunks
// each, so that threads that run late or slow take fewer.
inline int64_t chunk_for(int64_t n, int nthreads, int64_t per_thread = 4) {
  return std::max<int64_t>(1, n / (int64_t(std::max(nthreads, 1)) * per_thread));
}

}  // namespace RFMFAST_VARIANT
}  // namespace rfmfast
