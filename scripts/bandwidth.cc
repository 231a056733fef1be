// The machine's memory bandwidth as the optimizer kernels use it: loops over float32 arrays on the
// kernels' own threads (ms_lars/kernels/thread_pool.h), compiled with the kernels' flags
// (ms_lars/_kernel_build.py). scripts/benchmark.py loads this as a shared library and times each
// function over arrays the size of the benchmarked parameters.
//
// copy:  y = x            (1 read, 1 write per element)
// axpy:  y = a * x + y    (2 reads, 1 write)
// norm:  sum of x * x     (1 read), accumulated in double as the kernels do
#include <cstdint>
#include <vector>

#include "../ms_lars/kernels/thread_pool.h"

namespace {

// Runs loop(begin, end) on each thread's contiguous slice of [0, n), as the kernels split a layer.
template <typename Loop>
void Slices(int64_t n, Loop loop) {
  ms_lars::Parallel([&](int thread, int threads) { loop(n * thread / threads, n * (thread + 1) / threads, thread); });
}

}  // namespace

// The loops' thread count, as the kernels get theirs (_kernel_build.kernel_thread_count()).
extern "C" void BandwidthSetThreadCount(int threads) { ms_lars::SetThreadCount(threads); }

extern "C" void BandwidthCopy(const float *x, float *y, int64_t n) {
  Slices(n, [&](int64_t begin, int64_t end, int) {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) y[i] = x[i];
  });
}

extern "C" void BandwidthAxpy(float a, const float *x, float *y, int64_t n) {
  Slices(n, [&](int64_t begin, int64_t end, int) {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) y[i] = a * x[i] + y[i];
  });
}

// A function of its own, as the kernels' SliceSquares: GCC leaves this reduction scalar inside a lambda.
double SliceNorm(const float *__restrict x, int64_t begin, int64_t end) {
  double sum = 0.0;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = begin; i < end; ++i) sum += static_cast<double>(x[i]) * x[i];
  return sum;
}

extern "C" double BandwidthNorm(const float *x, int64_t n) {
  std::vector<double> sums(ms_lars::ThreadPool::Get().threads(), 0.0);
  Slices(n, [&](int64_t begin, int64_t end, int thread) { sums[thread] = SliceNorm(x, begin, end); });
  double sum = 0.0;
  for (double s : sums) sum += s;
  return sum;
}
