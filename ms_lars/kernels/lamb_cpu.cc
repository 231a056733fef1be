// Fused Lamb step on the CPU, in place, as MindSpore AOT custom ops. Formula: docs/formulas.md, "Lamb".
//
// LambStep(w, g, m, v, lr, beta1, beta2, eps, weight_decay, step) -> float32[3]: one float32
//   parameter (w, m, v updated in place; scalars float32, step int32, the step being taken, 1 on
//   the first call). Output: ||w||, ||u||, the trust ratio (the trust-ratio record).
// LambMulti(w[L], g[L], m[L], v[L], lr, wd, decay, beta1, beta2, eps, step) -> float32[L][3]: all L
//   float32 parameters in one call (one launch instead of one per parameter); lr and wd hold one
//   value or one per parameter, decay[L] is 0 or 1.
//
// Two passes per parameter instead of the composed graph's ~25: the first updates m and v and sums
// the squares of w and of u = m_hat / (sqrt(v_hat) + eps) + wd * w; the second recomputes u from
// the updated m, v and applies w -= lr * ratio * u.
#include <cmath>
#include <cstdint>
#include <vector>

#include "layer_chunks.h"

namespace {

int64_t Elements(int ndim, const int64_t *shape) {
  int64_t n = 1;
  for (int i = 0; i < ndim; ++i) n *= shape[i];
  return n;
}

constexpr int64_t kBlock = 256;

struct LambConstants {
  float beta1, beta2, one_minus_beta1, one_minus_beta2, inv_bc1, inv_bc2, eps;
};

LambConstants MakeConstants(float beta1, float beta2, float eps, int32_t step) {
  return {beta1, beta2, 1.0f - beta1, 1.0f - beta2, 1.0f / (1.0f - std::pow(beta1, static_cast<float>(step))),
          1.0f / (1.0f - std::pow(beta2, static_cast<float>(step))), eps};
}

// The two passes over a chunk [begin, end) of a parameter (layer_chunks.h), vectorized for the
// machine (MS_LARS_SIMD_VERSIONS); no FMA contraction (-ffp-contract=off), so every build rounds alike.
MS_LARS_INLINE void SliceMomentsLoop(
    float *__restrict m, float *__restrict v, const float *__restrict w, const float *__restrict g, int64_t begin,
    int64_t end, const LambConstants &c, float wd, double *weight_sq_out, double *update_sq_out) {
  // Squares are summed in float over blocks of kBlock elements (a few per SIMD lane, so the float
  // sums stay within ~1e-6 relative), and the blocks in double: the double conversions of every
  // element were half of this loop's arithmetic.
  double weight_sq = 0.0, update_sq = 0.0;
  for (int64_t block = begin; block < end; block += kBlock) {
    const int64_t stop = block + kBlock < end ? block + kBlock : end;
    float block_weight_sq = 0.0f, block_update_sq = 0.0f;
#pragma omp simd reduction(+ : block_weight_sq, block_update_sq)
    for (int64_t i = block; i < stop; ++i) {
      const float gi = g[i];
      const float mi = c.beta1 * m[i] + c.one_minus_beta1 * gi;
      const float vi = c.beta2 * v[i] + c.one_minus_beta2 * gi * gi;
      m[i] = mi;
      v[i] = vi;
      const float u = (mi * c.inv_bc1) / (std::sqrt(vi * c.inv_bc2) + c.eps) + wd * w[i];
      block_weight_sq += w[i] * w[i];
      block_update_sq += u * u;
    }
    weight_sq += block_weight_sq;
    update_sq += block_update_sq;
  }
  *weight_sq_out = weight_sq;
  *update_sq_out = update_sq;
}
MS_LARS_SIMD_VERSIONS(SliceMoments, SliceMomentsLoop,
                      (float *__restrict m, float *__restrict v, const float *__restrict w, const float *__restrict g,
                       int64_t begin, int64_t end, const LambConstants &c, float wd, double *weight_sq_out,
                       double *update_sq_out),
                      (m, v, w, g, begin, end, c, wd, weight_sq_out, update_sq_out))

MS_LARS_INLINE void SliceWeightsLoop(
    float *__restrict w, const float *__restrict m, const float *__restrict v, int64_t begin, int64_t end,
    const LambConstants &c, float wd, float step_size) {
#pragma omp simd
  for (int64_t i = begin; i < end; ++i) {
    const float u = (m[i] * c.inv_bc1) / (std::sqrt(v[i] * c.inv_bc2) + c.eps) + wd * w[i];
    w[i] -= step_size * u;
  }
}
MS_LARS_SIMD_VERSIONS(SliceWeights, SliceWeightsLoop,
                      (float *__restrict w, const float *__restrict m, const float *__restrict v, int64_t begin,
                       int64_t end, const LambConstants &c, float wd, float step_size),
                      (w, m, v, begin, end, c, wd, step_size))

// Every parameter's step, its layers shared among the kernel threads (layer_chunks.h).
// lr[lr_stride * layer] and wd[wd_stride * layer] (stride 0: one value for all); decay[layer] == 0
// means no weight decay.
void LambLayers(int layers, float *const *w, const float *const *g, float *const *m, float *const *v,
                const int64_t *sizes, const float *lr, int lr_stride, const float *wd, int wd_stride,
                const float *decay, const LambConstants &c, float *record) {
  auto layer_wd = [&](int layer) { return decay[layer] != 0.0f ? wd[wd_stride * layer] : 0.0f; };
  ms_lars::RunLayers<float>(
      layers, sizes,
      [&](int layer, int64_t begin, int64_t end, double *weight_sq, double *update_sq) {
        SliceMoments(m[layer], v[layer], w[layer], g[layer], begin, end, c, layer_wd(layer), weight_sq, update_sq);
      },
      [&](int layer, double weight_sq, double update_sq) {
        const float weight_norm = static_cast<float>(std::sqrt(weight_sq));
        const float update_norm = static_cast<float>(std::sqrt(update_sq));
        // Zero-norm guard: ratio 1 where either norm is 0 (as _trust_ratio.lamb_trust_ratio).
        const float ratio = (weight_norm > 0.0f && update_norm > 0.0f) ? weight_norm / update_norm : 1.0f;
        record[3 * layer] = weight_norm;
        record[3 * layer + 1] = update_norm;
        record[3 * layer + 2] = ratio;
        return lr[lr_stride * layer] * ratio;   // the step size
      },
      [&](int layer, int64_t begin, int64_t end, float step_size) {
        SliceWeights(w[layer], m[layer], v[layer], begin, end, c, layer_wd(layer), step_size);
      });
}

}  // namespace

extern "C" int LambStep(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                        void *stream, void *extra) {
  if (nparam != 11) return 1;
  float *w = static_cast<float *>(params[0]);
  const float *g = static_cast<const float *>(params[1]);
  float *m = static_cast<float *>(params[2]);
  float *v = static_cast<float *>(params[3]);
  const LambConstants c = MakeConstants(*static_cast<const float *>(params[5]), *static_cast<const float *>(params[6]),
                                        *static_cast<const float *>(params[7]),
                                        *static_cast<const int32_t *>(params[9]));
  const int64_t n = Elements(ndims[0], shapes[0]);
  const float decay = 1.0f;   // the caller passes wd = 0 where decay is off
  LambLayers(1, &w, &g, &m, &v, &n, static_cast<const float *>(params[4]), 0, static_cast<const float *>(params[8]),
             0, &decay, c, static_cast<float *>(params[10]));
  return 0;
}

extern "C" int LambMulti(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *stream,
                         void *extra) {
  if (nparam < 12 || (nparam - 8) % 4 != 0) return 1;
  const int layers = (nparam - 8) / 4;
  float *const *w = reinterpret_cast<float *const *>(params);
  const int scalars = 4 * layers;
  std::vector<int64_t> sizes(layers);
  for (int layer = 0; layer < layers; ++layer) sizes[layer] = Elements(ndims[layer], shapes[layer]);
  const bool lr_per_layer = Elements(ndims[scalars], shapes[scalars]) == layers && layers > 1;
  const bool wd_per_layer = Elements(ndims[scalars + 1], shapes[scalars + 1]) == layers && layers > 1;
  const LambConstants c = MakeConstants(
      *static_cast<const float *>(params[scalars + 3]), *static_cast<const float *>(params[scalars + 4]),
      *static_cast<const float *>(params[scalars + 5]), *static_cast<const int32_t *>(params[scalars + 6]));
  LambLayers(layers, w, w + layers, w + 2 * layers, w + 3 * layers, sizes.data(),
             static_cast<const float *>(params[scalars]), lr_per_layer ? 1 : 0,
             static_cast<const float *>(params[scalars + 1]), wd_per_layer ? 1 : 0,
             static_cast<const float *>(params[scalars + 2]), c, static_cast<float *>(params[scalars + 7]));
  return 0;
}

// The kernels' thread count, from Python before the first kernel call (thread_pool.h).
extern "C" void LambSetThreadCount(int threads) { ms_lars::SetThreadCount(threads); }
