// How the kernels share a step's layers among their threads (thread_pool.h). Each kernel makes two
// passes over a layer: the first returns two sums of squares (weight and gradient, or weight and
// update), from which the layer's trust ratio is found; the second applies it. A layer is cut into
// chunks of kChunk elements, which the threads take in turn as they come free, so a thread the
// operating system has set aside holds up no more than the chunk in its hands: the others take the
// rest (in a MindSpore process, MindSpore's own threads share the cores with the kernels'). A layer
// of one chunk is done whole, both passes, by the thread that takes it, and waits for no one; a
// thread waiting for a longer layer's last first-pass chunk does one of those meanwhile. In the
// second pass each thread first takes back the chunks its first pass read, last first: those are
// still in its caches (docs/speed.md, "0.8.0").
//
// The chunk sums are added in chunk order, so the norms, and the whole result, are the same bit
// for bit whatever the number of threads and whichever thread took which chunk.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
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

namespace ms_lars {

// Elements in a chunk: ~50-100 us of a pass on one core, so that taking one (an atomic add) costs
// nothing beside it, and small enough that two threads share a ResNet-50 layer of 64K elements.
constexpr int64_t kChunk = 32768;

// Runs every layer's two passes on the pool. For layer = 0 .. layers - 1, of sizes[layer] elements:
//   first_pass(layer, begin, end, double *first, double *second): [begin, end)'s pass 1, its two sums;
//   finish(layer, first, second) -> State: the layer's sums, once, on one thread (it may write the
//     layer's record); the State (what the second pass needs, the ratio) is handed to
//   second_pass(layer, begin, end, const State &): [begin, end)'s pass 2.
template <typename State, typename FirstPass, typename Finish, typename SecondPass>
void RunLayers(int layers, const int64_t *sizes, FirstPass first_pass, Finish finish, SecondPass second_pass) {
  struct Progress {   // one layer of several chunks: its first pass's chunks handed out and done
    std::atomic<int64_t> first_taken{0}, first_done{0};
    std::atomic<bool> ready{false};   // finish has run: state and the sums are final
  };
  std::vector<int> whole, chunked;   // layers of one chunk; of more
  std::vector<int64_t> first_sum(layers + 1, 0);   // where each layer's chunk sums start in sums
  for (int layer = 0; layer < layers; ++layer) {
    const int64_t chunks = (sizes[layer] + kChunk - 1) / kChunk;
    (chunks > 1 ? chunked : whole).push_back(layer);
    first_sum[layer + 1] = first_sum[layer] + (chunks > 1 ? chunks : 0);
  }
  std::vector<double> sums(2 * first_sum[layers]);
  std::unique_ptr<std::atomic<bool>[]> second_taken(new std::atomic<bool>[first_sum[layers]]);   // per chunk
  for (int64_t chunk = 0; chunk < first_sum[layers]; ++chunk) second_taken[chunk].store(false);
  std::vector<State> states(layers);
  std::unique_ptr<Progress[]> progress(new Progress[layers]);
  std::atomic<size_t> whole_taken{0};

  auto do_whole_layer = [&]() {   // one layer of one chunk, start to end; false when none is left
    const size_t index = whole_taken.fetch_add(1, std::memory_order_relaxed);
    if (index >= whole.size()) return false;
    const int layer = whole[index];
    double first, second;
    first_pass(layer, 0, sizes[layer], &first, &second);
    const State state = finish(layer, first, second);
    second_pass(layer, 0, sizes[layer], state);
    return true;
  };

  Parallel([&](int, int) {
    std::vector<int64_t> mine;   // the chunks of the current layer this thread's first pass took
    for (const int layer : chunked) {
      Progress &p = progress[layer];
      const int64_t n = sizes[layer], chunks = first_sum[layer + 1] - first_sum[layer];
      auto chunk_end = [&](int64_t begin) { return begin + kChunk < n ? begin + kChunk : n; };
      double *chunk_sums = sums.data() + 2 * first_sum[layer];
      mine.clear();
      for (int64_t chunk; (chunk = p.first_taken.fetch_add(1, std::memory_order_relaxed)) < chunks;) {
        const int64_t begin = chunk * kChunk, end = chunk_end(begin);
        first_pass(layer, begin, end, &chunk_sums[2 * chunk], &chunk_sums[2 * chunk + 1]);
        mine.push_back(chunk);
        if (p.first_done.fetch_add(1, std::memory_order_acq_rel) == chunks - 1) {   // the layer's last
          double first = 0.0, second = 0.0;
          for (int64_t c = 0; c < chunks; ++c) {
            first += chunk_sums[2 * c];
            second += chunk_sums[2 * c + 1];
          }
          states[layer] = finish(layer, first, second);
          p.ready.store(true, std::memory_order_release);
        }
      }
      int spins = 0;
      while (!p.ready.load(std::memory_order_acquire)) {
        if (!do_whole_layer()) Pause(&spins);
      }
      // The second pass: first the chunks this thread's first pass took, last first, as they are
      // still in its core's caches; then, last first, any another thread has not taken. The pass
      // is elementwise: who takes a chunk, and in what order, changes no bit.
      const State &state = states[layer];
      std::atomic<bool> *taken = second_taken.get() + first_sum[layer];
      auto second_pass_once = [&](int64_t chunk) {
        if (taken[chunk].load(std::memory_order_relaxed) || taken[chunk].exchange(true)) return;
        const int64_t begin = chunk * kChunk, end = chunk_end(begin);
        second_pass(layer, begin, end, state);
      };
      for (auto chunk = mine.rbegin(); chunk != mine.rend(); ++chunk) second_pass_once(*chunk);
      for (int64_t chunk = chunks - 1; chunk >= 0; --chunk) second_pass_once(chunk);
    }
    while (do_whole_layer()) {
    }
  });
}

}  // namespace ms_lars
