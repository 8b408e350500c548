/* The fp32 FMA peak of this machine's cores: the ceiling for any kernel, against which the benchmark's GFLOP/s
 * are read (docs/engine.md, "Where it falls short").
 *
 * Each thread runs 12 independent chains of 16-lane AVX-512 fused multiply-adds on registers only (no memory
 * traffic, enough chains to hide the FMA latency), so the rate is the cores' arithmetic limit.
 *
 *   gcc -O2 -mavx512f -fopenmp benchmarks/fma_peak.c -o /tmp/fma_peak && OMP_NUM_THREADS=2 /tmp/fma_peak
 */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(void) {
  const long rounds = 8000000;  /* per thread: 12 FMAs of 16 lanes each */
  double best = 0.0;
  for (int rep = 0; rep < 5; ++rep) {
    double sink = 0.0;
    const double t0 = now();
#pragma omp parallel reduction(+ : sink)
    {
      __m512 acc[12];
      const __m512 b = _mm512_set1_ps(1.0000001f), c = _mm512_set1_ps(1e-7f);
      for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ps((float)i);
      for (long k = 0; k < rounds; ++k) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; ++i) acc[i] = _mm512_fmadd_ps(acc[i], b, c);
      }
      float s = 0.f;
      for (int i = 0; i < 12; ++i) s += _mm512_reduce_add_ps(acc[i]);
      sink += s; /* keeps the chains live */
    }
    const double secs = now() - t0;
    const double gflops = (double)rounds * 12 * 16 * 2 * omp_get_max_threads() / secs / 1e9;
    if (gflops > best) best = gflops;
    if (sink == 42.0) printf(" ");
  }
  printf("fp32 FMA peak on %d threads: %.1f GFLOP/s\n", omp_get_max_threads(), best);
  return 0;
}
