// Reused memory for the engine's large per-call tensors (gates, cells, outputs, their gradients).
//
// A training step allocates and frees the same few multi-megabyte tensors every iteration. glibc serves blocks
// above its mmap threshold with fresh pages each time, so every call pays a page fault and a kernel zero-fill per
// 4 KiB: about 0.25 ms per MB on this machine, 15% of a (32,200,256,512) training step. Blocks freed by the
// engine's tensors are kept here and handed back to the next request of a size that fits, so steady-state
// training touches only warm pages. Blocks from 128 KiB (glibc's default mmap threshold) go through the pool:
// with a 1 MiB floor the buffers just under it (e.g. the (1000, 1, 256) gates of a long single sequence) took
// fresh pages every call, about 1100 page faults per call that doubled a layer-norm step's time. The pool holds
// at most LSTMKIT_POOL_MB megabytes (default 2048; 0 disables it); release_pool() returns everything it holds to
// the system.
#pragma once

#include <ATen/ATen.h>

#include <cstdlib>
#include <map>
#include <mutex>

namespace lstmkit {

class BlockPool {
 public:
  static BlockPool& get() {
    static BlockPool* pool = new BlockPool();  // never destroyed: tensors may outlive static destruction
    return *pool;
  }

  // An uninitialised tensor of ``sizes``, from the pool when it is at least kMinBytes.
  at::Tensor empty(at::IntArrayRef sizes, const at::TensorOptions& opts) {
    int64_t numel = 1;
    for (int64_t s : sizes) numel *= s;
    const size_t bytes = (size_t)numel * opts.dtype().itemsize();
    if (bytes < kMinBytes || limit_ == 0) return at::empty(sizes, opts);
    size_t cap = 0;
    void* ptr = take(bytes, &cap);
    if (ptr == nullptr) {
      cap = (bytes + 4095) & ~(size_t)4095;
      if (posix_memalign(&ptr, 64, cap) != 0) return at::empty(sizes, opts);
    }
    return at::from_blob(ptr, sizes, [this, cap](void* p) { give(p, cap); }, opts.device(at::kCPU));
  }

  // Frees every cached block; returns the bytes released.
  size_t release() {
    std::lock_guard<std::mutex> lock(mu_);
    size_t n = 0;
    for (auto& kv : free_) { std::free(kv.second); n += kv.first; }
    free_.clear();
    cached_ = 0;
    return n;
  }

  size_t cached_bytes() {
    std::lock_guard<std::mutex> lock(mu_);
    return cached_;
  }

 private:
  static constexpr size_t kMinBytes = (size_t)1 << 17;  // below: glibc's heap, no page faults

  BlockPool() {
    const char* e = std::getenv("LSTMKIT_POOL_MB");
    limit_ = (size_t)(e ? std::atoll(e) : 2048) << 20;
  }

  // The smallest cached block of at least ``bytes`` and at most 1.5x that (so small requests do not pin big
  // blocks), with its capacity in *cap; nullptr if there is none.
  void* take(size_t bytes, size_t* cap) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = free_.lower_bound(bytes);
    if (it == free_.end() || it->first > bytes + bytes / 2) return nullptr;
    void* p = it->second;
    *cap = it->first;
    cached_ -= it->first;
    free_.erase(it);
    return p;
  }

  void give(void* p, size_t cap) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (cached_ + cap <= limit_) {
        free_.emplace(cap, p);
        cached_ += cap;
        return;
      }
    }
    std::free(p);
  }

  std::mutex mu_;
  std::multimap<size_t, void*> free_;  // capacity -> block
  size_t cached_ = 0, limit_ = 0;
};

// Large engine tensors come from here (see BlockPool).
inline at::Tensor pool_empty(at::IntArrayRef sizes, const at::TensorOptions& opts) {
  return BlockPool::get().empty(sizes, opts);
}

}  // namespace lstmkit
