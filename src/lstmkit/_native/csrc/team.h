// Two-thread team for the time loop: a persistent worker woken once per call, and a spin barrier per step.
//
// A recurrence needs a barrier at every step (h_t is read whole by the next step's GEMM). OpenMP or a task pool
// pays a thread wake-up per step; here the worker is woken once per kernel call, both threads run the whole
// time loop on their half of the hidden units, and meet at a spin barrier (~100 ns) after each step.
#pragma once

#include <atomic>
#include <cstdlib>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <unistd.h>
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

class Team2 {
 public:
  static Team2& get() {
    // One worker per process, created on first use and never joined. A forked child (DataLoader workers)
    // does not inherit the thread, so it makes its own team.
    static Team2* team = nullptr;
    static pid_t owner = 0;
    static std::mutex create_mu;
    std::lock_guard<std::mutex> lk(create_mu);
    if (team == nullptr || owner != getpid()) {
      team = new Team2();
      owner = getpid();
    }
    return *team;
  }

  // Run job(0) on the calling thread and job(1) on the worker; returns when both are done.
  void run(const std::function<void(int)>& job) {
    std::lock_guard<std::mutex> serial(call_mu_);  // the team serves one kernel call at a time
    job_ = &job;
    const uint64_t id = go_.fetch_add(1, std::memory_order_acq_rel) + 1;
    { std::lock_guard<std::mutex> lk(mu_); }
    cv_.notify_one();
    job(0);
    for (int spins = 0; done_.load(std::memory_order_acquire) != id; ++spins) {
      if (spins < 20000) LSTMKIT_PAUSE(); else std::this_thread::yield();
    }
  }

 private:
  Team2() { worker_ = new std::thread([this] { loop(); }); worker_->detach(); }

  void loop() {
    uint64_t seen = 0;
    for (;;) {
      int spins = 0;
      while (go_.load(std::memory_order_acquire) == seen) {
        if (++spins < 4000) { LSTMKIT_PAUSE(); continue; }
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return go_.load(std::memory_order_acquire) != seen; });
      }
      seen = go_.load(std::memory_order_acquire);
      (*job_)(1);
      done_.store(seen, std::memory_order_release);
    }
  }

  std::thread* worker_ = nullptr;
  std::mutex call_mu_, mu_;
  std::condition_variable cv_;
  std::atomic<uint64_t> go_{0}, done_{0};
  const std::function<void(int)>* job_ = nullptr;
};

}  // namespace lstmkit

#include <ATen/Parallel.h>
#include <vector>

namespace lstmkit {

// Run body(b0, b1, split) on the batch rows [0, B): split between the two threads of the team when each half has
// enough work (rows are independent through the whole time loop, so no barrier is needed), else on one thread.
// ``bs`` are the rows active per step (rows sorted longest first): the split point balances the total steps.
template <class F>
void split_rows(const std::vector<int64_t>& bs, int64_t B, int64_t macs_per_row_step, F&& body) {
  static const int forced = [] {
    const char* e = std::getenv("LSTMKIT_THREADS");
    return e ? std::atoi(e) : 0;
  }();
  int64_t total = 0;
  for (int64_t v : bs) total += v;
  const bool two = B >= 2 && forced != 1 && at::get_num_threads() >= 2 && !at::in_parallel_region() &&
                   (forced >= 2 || macs_per_row_step * B >= 16384);
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
  Team2::get().run(job);
}

}  // namespace lstmkit
