// Layer-norm arithmetic shared by the row passes (ln_rows.cpp) and the recurrent loops (ln_lstm.cpp).
#pragma once

#include <cmath>
#include <cstdint>

namespace lstmkit {

constexpr float kLnEps = 1e-5f;

// mean and 1/std of v (n values), two passes (no cancellation in the variance)
inline void row_stats(const float* v, int64_t n, float* mean_out, float* rstd_out) {
  float mean = 0.f;
#pragma omp simd reduction(+ : mean)
  for (int64_t k = 0; k < n; ++k) mean += v[k];
  mean /= (float)n;
  float var = 0.f;
#pragma omp simd reduction(+ : var)
  for (int64_t k = 0; k < n; ++k) { const float d = v[k] - mean; var += d * d; }
  *mean_out = mean;
  // in double: under -ffast-math GCC turns a float 1/sqrt into rsqrt plus one Newton step (a few ulp off), and
  // a layer norm over few values with a small variance amplifies that into the gradients
  *rstd_out = (float)(1.0 / std::sqrt((double)var / (double)n + (double)kLnEps));
}

// normalise v (n values) into out; returns 1/std
inline float normalise(const float* v, float* out, int64_t n) {
  float mean, rstd;
  row_stats(v, n, &mean, &rstd);
#pragma omp simd
  for (int64_t k = 0; k < n; ++k) out[k] = (v[k] - mean) * rstd;
  return rstd;
}

// dx of y = n * w (+ b), n = (x - mean) * rstd, given dn = dy * w: rstd * (dn - mean(dn) - n * mean(dn * n))
inline void normalise_backward(const float* dn, const float* n, float rstd, float* dx, int64_t len) {
  float s1 = 0.f, s2 = 0.f;
#pragma omp simd reduction(+ : s1, s2)
  for (int64_t k = 0; k < len; ++k) { s1 += dn[k]; s2 += dn[k] * n[k]; }
  s1 /= (float)len;
  s2 /= (float)len;
#pragma omp simd
  for (int64_t k = 0; k < len; ++k) dx[k] = rstd * (dn[k] - s1 - n[k] * s2);
}

}  // namespace lstmkit
