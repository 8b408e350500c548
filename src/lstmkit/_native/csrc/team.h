// Two threads for the time loop: started once per kernel call, with a spin barrier per step.
//
// A recurrence needs a barrier at every step (h_t is read whole by the next step's GEMM). Waking threads per step
// costs more than a small step; here two threads are started once per kernel call, each runs the whole time loop
// on its half of the hidden units, and they meet at a spin barrier (~100 ns) after each step.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <functional>
#if defined(_OPENMP)
#include <omp.h>
#endif
#include <thread>
#if defined(__SSE2__)
#include <emmintrin.h>
#define LSTMKIT_PAUSE() _mm_pause()
#else
#define LSTMKIT_PAUSE() ((void)0)
#endif

namespace lstmkit {

// Sense-reversing barrier for exactly two threads.
struct Barrier2 {
  std::atomic<int> count{0};
  std::atomic<int> phase{0};
  void wait() {
    const int ph = phase.load(std::memory_order_relaxed);
    if (count.fetch_add(1, std::memory_order_acq_rel) == 1) {
      count.store(0, std::memory_order_relaxed);
      phase.store(ph + 1, std::memory_order_release);
    } else {
      // spin (the partner is normally a few hundred ns behind); yield if it was descheduled
      for (int spins = 0; phase.load(std::memory_order_acquire) == ph; ++spins) {
        if (spins < 20000) LSTMKIT_PAUSE(); else std::this_thread::yield();
      }
    }
  }
};

// Runs job(0) and job(1) on two threads of the OpenMP pool that torch itself uses (the same libgomp), so the
// threads are warm after torch's own parallel work and nothing competes with them. Returns false, having run
// nothing, when the runtime grants fewer than two threads (nested region, OMP limits): the caller then runs
// its single-threaded path.
struct Team2 {
  static bool run(const std::function<void(int)>& job) {
#if defined(_OPENMP)
    bool ran = true;
#pragma omp parallel num_threads(2)
    {
      if (omp_get_num_threads() == 2) {
        job(omp_get_thread_num());
      } else {
#pragma omp single
        ran = false;
      }
    }
    return ran;
#else
    (void)job;
    return false;
#endif
  }
};

// Cost of one step of the two-thread team (a barrier round trip), re-measured at most once a second: on a VM the
// two vCPUs may share a cache or sit far apart, and that changes while a process runs (here a barrier took
// about 0.2 us at some times and over 1 us at others). Measuring takes 64 barriers.
inline double team_barrier_ns() {
  using clock = std::chrono::steady_clock;
  static std::atomic<int64_t> cost{-1}, stamp{0};
  const int64_t now = clock::now().time_since_epoch().count();
  if (cost.load() < 0 || now - stamp.load() > 1000000000LL) {
    stamp.store(now);
    constexpr int kRounds = 64;
    Barrier2 bar;
    std::function<void(int)> job = [&](int) { for (int i = 0; i < kRounds; ++i) bar.wait(); };
    const auto t0 = clock::now();
    const bool ran = Team2::run(job);
    const double ns = std::chrono::duration<double, std::nano>(clock::now() - t0).count() / kRounds;
    cost.store(ran ? (int64_t)ns : (int64_t)1e9);
  }
  return (double)cost.load();
}

// Whether splitting a recurrence step of ``macs`` multiply-adds between the two threads (one barrier per step)
// beats one thread: a small step runs at about 15 multiply-adds per ns on one core, and halving it must save
// more than the barrier costs (with a margin of 1.5).
inline bool team_pays(int64_t macs) {
  const double one_thread_ns = (double)macs / 15.0;
  return team_barrier_ns() * 3.0 < one_thread_ns;
}

}  // namespace lstmkit

#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>

#include <algorithm>
#include <exception>
#include <vector>

namespace lstmkit {

// LSTMKIT_THREADS: 1 forces one thread, 2 forces two (when the runtime grants them), unset lets size decide.
// Read at every kernel call (a getenv is a few hundred ns), so a process or a test may change it.
inline int forced_threads() {
  const char* e = std::getenv("LSTMKIT_THREADS");
  return e ? std::atoi(e) : 0;
}

// Whether the two-thread team may run at all: not forced to one thread, two intra-op threads allowed (so
// torch.set_num_threads(1) implies one), and not already inside a parallel region.
inline bool team_allowed(int forced) {
  return forced != 1 && at::get_num_threads() >= 2 && !at::in_parallel_region();
}

// Whether the fused LSTM loops split a step's U unit blocks between the two threads (B rows, a GH x K GEMM).
inline bool use_two_threads(int64_t B, int64_t GH, int64_t K, int64_t U) {
  const int forced = forced_threads();
  if (U < 2 || !team_allowed(forced)) return false;
  if (forced >= 2) return true;
  // below 12288 multiply-adds a step is a few hundred ns: the barrier would cost as much; above, ask the team
  return B * GH * K >= 12288 && team_pays(B * GH * K);
}

// Streams (stream.h, stream_gru.h): whether a layer is large enough to pay for a barrier per layer and step (at
// least 32 units, 2^17 multiply-adds a step), and whether a step splits its layers' units between the two threads:
// some layer is large and the barrier costs less than the step's ``macs`` save; LSTMKIT_THREADS=2 splits whatever
// the size, 1 never.
inline bool stream_layer_large(int64_t H, int64_t macs) { return H >= 32 && macs >= ((int64_t)1 << 17); }
inline bool stream_split(bool large, int64_t macs) {
  const int forced = forced_threads();
  return team_allowed(forced) && (forced >= 2 || (large && team_pays(macs)));
}

// The units [j0, j1) thread tid of nth owns in a stream step: all of them, or a half on a 16-unit boundary.
inline void stream_units(int64_t H, int tid, int nth, int64_t* j0, int64_t* j1) {
  const int64_t half = std::min(H, ((H / 16 + 1) / 2) * 16);
  *j0 = nth == 1 || tid == 0 ? 0 : half;
  *j1 = nth == 1 || tid == 1 ? H : half;
}

// Run body(b0, b1, split) on the batch rows [0, B): split between the two threads of the team when each half has
// enough work (rows are independent through the whole time loop, so no barrier is needed), else on one thread.
// ``bs`` are the rows active per step (rows sorted longest first): the split point balances the total steps.
template <class F>
void split_rows(const std::vector<int64_t>& bs, int64_t B, int64_t macs_per_row_step, F&& body) {
  const int forced = forced_threads();
  int64_t total = 0;
  for (int64_t v : bs) total += v;
  const bool two = B >= 2 && team_allowed(forced) && (forced >= 2 || macs_per_row_step * B >= 16384);
  if (!two) { body((int64_t)0, B, false); return; }
  // mid: the first row index where the rows before it hold half of all row-steps
  int64_t mid = 1, acc = 0;
  for (int64_t b = 0; b < B - 1; ++b) {
    int64_t len = 0;
    for (int64_t v : bs) len += v > b ? 1 : 0;
    acc += len;
    mid = b + 1;
    if (2 * acc >= total) break;
  }
  std::function<void(int)> job = [&](int tid) { tid == 0 ? body((int64_t)0, mid, true) : body(mid, B, true); };
  if (!Team2::run(job)) body((int64_t)0, B, false);
}

// Whether the layer-norm loops (ln_lstm.cpp) split each step's GEMM by columns between the two threads, both
// running the row passes: for one sequence (B = 1), whose batch cannot be split, when the step's GH x K GEMM pays
// for a barrier, as use_two_threads decides for the fused loop. (With two or more rows the row split measured
// faster: 1.2-1.4x at B = 4-16, H = 128-256; level at B = 2.)
inline bool ln_split_cols(int64_t B, int64_t GH, int64_t K) {
  const int forced = forced_threads();
  if (B != 1 || !team_allowed(forced)) return false;
  if (forced >= 2) return true;
  return GH * K >= 12288 && team_pays(GH * K);
}

// The two-thread split of a GEMM over all T*B rows (gemm.h, gemm_tn.h): body(tid, m0, m1, bar) on the rows
// [0, M), halved at a whole 6-row register block, when the product's ``macs`` multiply-adds pay for the team's
// start-up (2^21 and up); else body(0, 0, M, nullptr) on the calling thread. ``bar`` lets the halves meet once
// (e.g. after packing an operand between them).
template <class F>
void gemm_row_halves(int64_t M, int64_t macs, F&& body) {
  constexpr int64_t kTeamMacs = (int64_t)1 << 21;
  const int forced = forced_threads();
  if (M >= 12 && team_allowed(forced) && (forced >= 2 || macs >= kTeamMacs)) {
    const int64_t mid = (M / 2 + 5) / 6 * 6;
    Barrier2 bar;
    std::function<void(int)> job = [&](int tid) {
      tid == 0 ? body(0, (int64_t)0, mid, &bar) : body(1, mid, M, &bar);
    };
    if (Team2::run(job)) return;
  }
  body(0, (int64_t)0, M, (Barrier2*)nullptr);
}

// Runs job(0) and job(1) at once on the team's two threads, each with the caller's thread-local state (grad mode,
// inference mode, dispatch keys); one after the other when the team may not run (LSTMKIT_THREADS=1, one intra-op
// thread, inside another parallel region). An exception in either is rethrown here once both have ended.
inline void run_both(const std::function<void(int)>& job) {
  if (team_allowed(forced_threads())) {
    const at::ThreadLocalState state;
    std::exception_ptr err[2];
    std::function<void(int)> guarded = [&](int tid) {
      at::ThreadLocalStateGuard guard(state);
      try {
        job(tid);
      } catch (...) {
        err[tid] = std::current_exception();
      }
    };
    if (Team2::run(guarded)) {
      for (const auto& e : err)
        if (e) std::rethrow_exception(e);
      return;
    }
  }
  job(0);
  job(1);
}

}  // namespace lstmkit
