// Shared by the kernels that sum squares in an OpenMP parallel region (lars_cpu.cc's
// LarsMomentumMulti and LarsGradient*, lamb_cpu.cc's LambMulti and LambStep): each thread takes a
// contiguous slice of a layer (the same one in both passes of the whole-step kernels, so a slice
// that fits in its cache is read from there the second time), and the threads meet once per layer
// to add their slices' sums of squares in thread order.
#pragma once

#include <cstdint>
#include <vector>

#include <omp.h>

// A function that carries its hot loop compiled twice on x86-64, for AVX2 and for the baseline ISA,
// one chosen at load time by the CPU (ifunc). Elsewhere (aarch64: NEON is the baseline, and -O3
// vectorizes for it) the function is compiled once, for the target. GCC rejects target("avx2")
// on any other architecture, so the attribute exists only where it means something.
#if defined(__x86_64__) || defined(__i386__)
#define MS_LARS_SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define MS_LARS_SIMD_CLONES
#endif

// This thread's slice [begin, end) of a layer of n elements.
inline void ThreadSlice(int64_t n, int thread, int threads, int64_t *begin, int64_t *end) {
  *begin = n * thread / threads;
  *end = n * (thread + 1) / threads;
}

// The two sums of squares of a layer (weight and gradient, or weight and update), added across
// threads in thread order, so the result does not depend on which thread finished first.
class LayerSums {
 public:
  LayerSums() : partial_(2 * 2 * static_cast<size_t>(omp_get_max_threads())) {}

  // Called by every thread of the parallel region with its slice's sums; returns with the layer's.
  void Combine(int layer, int thread, int threads, double *first, double *second) {
    // Two buffers by layer parity: a thread ahead on the next layer never overwrites sums a thread
    // behind is still adding (it cannot pass the next barrier before that one has read them).
    double *sums = partial_.data() + (layer % 2) * 2 * threads;
    sums[2 * thread] = *first;
    sums[2 * thread + 1] = *second;
#pragma omp barrier
    *first = *second = 0.0;
    for (int t = 0; t < threads; ++t) {
      *first += sums[2 * t];
      *second += sums[2 * t + 1];
    }
  }

 private:
  std::vector<double> partial_;
};
