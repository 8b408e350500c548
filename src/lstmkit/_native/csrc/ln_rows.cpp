// Layer norm over all rows at once: LN_ih of the input projection and the column sums of the backward.
#include "fused.h"
#include "kernels.h"
#include "ln_math.h"

#include <ATen/Parallel.h>

#include <vector>

namespace lstmkit {

// LN_ih of the layer node (csrc/layer.cpp), over the T*B rows of the input projection at once, before the loop:
// out = n * w + b with n = (x - mean) * rstd per row of x (R, N); rstd is saved for the backward, n is not (it is
// recomputed there from x and the row means). ATen's layer_norm costs 2-3x more here: its out= form copies,
// and its backward computes the gain sums in a second pass.
void ln_rows_fwd(int64_t R, int64_t N, const float* x, const float* w, const float* b, float* out, float* mean,
                 float* rstd) {
  at::parallel_for(0, R, 16, [&](int64_t r0, int64_t r1) {
    FlushDenormals ftz;
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * N;
      float* o = out + r * N;
      row_stats(xr, N, mean + r, rstd + r);
      const float m = mean[r], rs = rstd[r];
#pragma omp simd
      for (int64_t k = 0; k < N; ++k) o[k] = (xr[k] - m) * rs * w[k] + b[k];
    }
  });
}

// One pass over the gradient d (R, N) of a layer-norm output: column sums sum_r d (into db) and sum_r d * n2
// (into dw2, when n2 is given: a gain whose normalised values were saved); and when x is given, the backward of
// ln_rows_fwd: dx (R, N) and the gain sum sum_r d * n (into dw) with n recomputed from x, mean and rstd.
// Column sums go through per-thread partials added in thread order, so results do not depend on timing.
void ln_rows_bwd(int64_t R, int64_t N, const float* d, const float* x, const float* mean, const float* rstd,
                 const float* w, float* dx, float* dw, float* db, const float* n2, float* dw2) {
  const int nt = at::get_num_threads();
  std::vector<float> parts((size_t)nt * 3 * N, 0.f);
  at::parallel_for(0, R, 16, [&](int64_t r0, int64_t r1) {
    FlushDenormals ftz;
    const int tid = at::get_thread_num();  // 0 when run inline (inside another parallel region)
    float* pw = parts.data() + (size_t)(tid < nt ? tid : 0) * 3 * N;
    float *pb = pw + N, *pw2 = pw + 2 * N;
    std::vector<float> nbuf(x ? N : 0), dn(x ? N : 0);
    for (int64_t r = r0; r < r1; ++r) {
      const float* dr = d + r * N;
#pragma omp simd
      for (int64_t k = 0; k < N; ++k) pb[k] += dr[k];
      if (n2) {
        const float* nr = n2 + r * N;
#pragma omp simd
        for (int64_t k = 0; k < N; ++k) pw2[k] += dr[k] * nr[k];
      }
      if (!x) continue;
      const float* xr = x + r * N;
      const float m = mean[r], rs = rstd[r];
      float* n = nbuf.data();
#pragma omp simd
      for (int64_t k = 0; k < N; ++k) {
        n[k] = (xr[k] - m) * rs;
        dn[k] = dr[k] * w[k];
        pw[k] += dr[k] * n[k];
      }
      normalise_backward(dn.data(), n, rs, dx + r * N, N);
    }
  });
  for (int64_t k = 0; k < N; ++k) {
    float sw = 0.f, sb = 0.f, sw2 = 0.f;
    for (int i = 0; i < nt; ++i) {
      const float* p = parts.data() + (size_t)i * 3 * N;
      sw += p[k]; sb += p[N + k]; sw2 += p[2 * N + k];
    }
    if (dw) dw[k] = sw;
    if (db) db[k] = sb;
    if (dw2) dw2[k] = sw2;
  }
}

}  // namespace lstmkit
