// rfmfast's own worker threads, shared by every kernel (pool.cpp), in place of OpenMP's.
//
// Why not OpenMP: its threads spin while they wait, and its work-sharing loops end in a barrier
// that every thread must reach. On a machine where anything else competes for the cores (a
// laptop, a shared notebook server, a CI runner) one descheduled thread stalls the others at
// each barrier while they burn the other process's time: the recursive Cholesky, with hundreds
// of short parallel regions, ran several times slower with two threads than with one next to a
// single busy process. Here a job's items are claimed from a shared counter by whichever threads
// are running, the calling thread always among them; a worker that wakes late finds nothing
// left and goes back to sleep, and a job ends when the items are done, not when every thread
// has checked in. Idle workers spin for a few microseconds (back-to-back jobs cost little) and
// then block on a condition variable (they take no time from other work).
//
// This header is compiled once, outside the instruction-set variants; parallel.h holds the
// typed helpers that each variant instantiates.
#pragma once

namespace rfmfast {

// A job's body: call(ctx, tid), tid in [0, nthreads), 0 the calling thread.
struct PoolTask {
  void (*call)(void* ctx, int tid);
  void* ctx;
};

// Runs task on the calling thread (tid 0) and on up to nthreads - 1 workers that join while it
// runs; returns when every participant that joined has returned. The body must claim its work
// from a shared counter (parallel.h), since participants other than tid 0 are not guaranteed
// to run. A call from inside a job, or while another thread's job runs, runs the body on the
// calling thread alone. The first exception a participant throws is rethrown here.
void pool_run(int nthreads, PoolTask task);

}  // namespace rfmfast
