// Shared by the kernels that sum squares in a parallel region (thread_pool.h; lars_cpu.cc's
// LarsMomentumMulti and LarsGradient*, lamb_cpu.cc's LambMulti and LambStep): each thread takes a
// contiguous slice of a layer (the same one in both passes of the whole-step kernels, so a slice
// that fits in its cache is read from there the second time), and the threads meet once per layer
// to add their slices' sums of squares in thread order.
#pragma once

#include <cstdint>
#include <vector>

#include "thread_pool.h"

// A hot loop compiled twice on x86-64, for AVX2 and for the baseline ISA, the AVX2 one taken where
// the CPU and the OS support it. MS_LARS_SIMD_VERSIONS(Name, Loop, (params), (args)) defines
// Name(params), which runs Loop(args), an always-inlined function, so each version is compiled for
// its own ISA. The choice is made here, from CPUID, not by target_clones: its ifunc resolver asks
// the compiler's runtime (libgcc, compiler-rt) about the CPU, and zig's compiler-rt answers "no
// AVX2" everywhere. Elsewhere (aarch64: NEON is the baseline, and -O3 vectorizes for it) Name is
// compiled once, for the target.
#define MS_LARS_INLINE inline __attribute__((always_inline))
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

namespace ms_lars {
// AVX2 is usable: the CPU has it (CPUID leaf 7) and the OS saves the YMM registers (XCR0 bits 1, 2).
inline bool CpuHasAvx2() {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_OSXSAVE) || !(c & bit_AVX)) return false;
  unsigned xcr0, xcr0_high;
  __asm__("xgetbv" : "=a"(xcr0), "=d"(xcr0_high) : "c"(0));
  if ((xcr0 & 6) != 6 || __get_cpuid_max(0, nullptr) < 7) return false;
  __cpuid_count(7, 0, a, b, c, d);
  return (b & bit_AVX2) != 0;
}

inline bool UseAvx2() {
  static const bool avx2 = CpuHasAvx2();
  return avx2;
}
}  // namespace ms_lars

#define MS_LARS_SIMD_VERSIONS(name, loop, params, args)                                   \
  __attribute__((target("avx2"))) void name##Avx2 params { loop args; }                  \
  void name##Baseline params { loop args; }                                               \
  void name params {                                                                      \
    if (ms_lars::UseAvx2()) name##Avx2 args; else name##Baseline args;                    \
  }
#else
#define MS_LARS_SIMD_VERSIONS(name, loop, params, args) \
  void name params { loop args; }
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
  explicit LayerSums(int threads) : partial_(2 * 2 * static_cast<size_t>(threads)), barrier_(threads) {}

  // Called by every thread of the parallel region with its slice's sums; returns with the layer's.
  void Combine(int layer, int thread, int threads, double *first, double *second) {
    // Two buffers by layer parity: a thread ahead on the next layer never overwrites sums a thread
    // behind is still adding (it cannot pass the next barrier before that one has read them).
    double *sums = partial_.data() + (layer % 2) * 2 * threads;
    sums[2 * thread] = *first;
    sums[2 * thread + 1] = *second;
    barrier_.Wait();
    *first = *second = 0.0;
    for (int t = 0; t < threads; ++t) {
      *first += sums[2 * t];
      *second += sums[2 * t + 1];
    }
  }

 private:
  std::vector<double> partial_;
  ms_lars::Barrier barrier_;
};
