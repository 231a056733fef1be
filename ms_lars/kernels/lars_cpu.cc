// LARS for one float32 layer on the CPU, as MindSpore AOT custom ops. Formula: docs/formulas.md, "LARS".
//
// Every op takes the scalars lr, weight_decay, coefficient, epsilon, inverse_loss_scale, use_clip
// (float32; use_clip is 0 or 1) after its tensors, and makes two passes: the squared norms of w
// and of g / S in double, then one elementwise pass with the guarded (and optionally clipped) ratio.
//
// LarsGradient(w, g, scalars...) -> new gradient: out = ratio * (g / S + wd * w), for any inner
//   optimizer to apply (the rewrite path).
// LarsGradientRecorded(w, g, scalars...) -> (new gradient, record): the same, and the record
//   float32[3] = ||w||, ||g / S||, ratio applied (trust-ratio telemetry).
// LarsMomentumMulti(w[L], g[L], moment[L], lr, wd, momentum, flags, constants) -> record[L][3]: the
//   whole step of LARS(nn.Momentum) for all L layers in one call, in place: per layer
//   g' = ratio * (g / S + wd * w) (g' = g / S for a layer the filter skips), then nn.Momentum's
//   documented update: moment = moment * momentum + g'; w -= lr * moment, or with Nesterov
//   w -= g' * lr + moment * momentum * lr. One norm pass and one update pass per layer instead of the
//   rewrite path's norm, rewrite and ApplyMomentum passes, and one launch instead of one per layer.
//   lr and wd hold one value, or one per layer; flags[L][2] = decay, lars (0 or 1); constants =
//   coefficient, epsilon, inverse_loss_scale, use_clip, nesterov.
#include <algorithm>
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

float Scalar(void *param) { return *static_cast<const float *>(param); }

struct TrustRatio {
  float weight_norm, grad_norm, ratio;
};

// The norms from their squares, and the ratio: guarded (1 where a norm is 0, as
// _trust_ratio.lars_trust_ratio) and optionally clipped (as _trust_ratio.clip_by_learning_rate).
TrustRatio FinishTrustRatio(double weight_sq, double grad_sq, float lr, float wd, float coefficient, float epsilon,
                            bool use_clip) {
  TrustRatio result;
  result.weight_norm = static_cast<float>(std::sqrt(weight_sq));
  result.grad_norm = static_cast<float>(std::sqrt(grad_sq));
  result.ratio = (result.weight_norm > 0.0f && result.grad_norm > 0.0f)
                     ? coefficient * result.weight_norm / (result.grad_norm + wd * result.weight_norm + epsilon)
                     : 1.0f;
  if (use_clip) result.ratio = std::min(result.ratio / lr, 1.0f);
  return result;
}

// The sums of squares of w and g / S over [begin, end), vectorized for the machine
// (MS_LARS_SIMD_VERSIONS); no FMA contraction (-ffp-contract=off), so every build rounds alike.
MS_LARS_INLINE void SliceSquaresLoop(
    const float *__restrict w, const float *__restrict g, float inverse_scale, int64_t begin, int64_t end,
    double *weight_sq_out, double *grad_sq_out) {
  double weight_sq = 0.0, grad_sq = 0.0;
#pragma omp simd reduction(+ : weight_sq, grad_sq)
  for (int64_t i = begin; i < end; ++i) {
    const float gi = g[i] * inverse_scale;
    weight_sq += static_cast<double>(w[i]) * w[i];
    grad_sq += static_cast<double>(gi) * gi;
  }
  *weight_sq_out = weight_sq;
  *grad_sq_out = grad_sq;
}
MS_LARS_SIMD_VERSIONS(SliceSquares, SliceSquaresLoop,
                      (const float *__restrict w, const float *__restrict g, float inverse_scale, int64_t begin,
                       int64_t end, double *weight_sq_out, double *grad_sq_out),
                      (w, g, inverse_scale, begin, end, weight_sq_out, grad_sq_out))

// out = scaled_inverse * g + scaled_decay * w over [begin, end), vectorized as SliceSquares.
MS_LARS_INLINE void SliceRewriteLoop(const float *__restrict w, const float *__restrict g, float scaled_inverse,
                                     float scaled_decay, int64_t begin, int64_t end, float *__restrict out) {
#pragma omp simd
  for (int64_t i = begin; i < end; ++i) out[i] = scaled_inverse * g[i] + scaled_decay * w[i];
}
MS_LARS_SIMD_VERSIONS(SliceRewrite, SliceRewriteLoop,
                      (const float *__restrict w, const float *__restrict g, float scaled_inverse, float scaled_decay,
                       int64_t begin, int64_t end, float *__restrict out),
                      (w, g, scaled_inverse, scaled_decay, begin, end, out))

// The rewrite: out = ratio * (g / S + wd * w), with the norms of (w, g) from the scalars at params[2..7],
// the layer shared among the kernel threads as LarsMomentumMulti's layers are (layer_chunks.h).
TrustRatio RewriteGradient(void **params, int64_t n, float *out) {
  const float *w = static_cast<const float *>(params[0]);
  const float *g = static_cast<const float *>(params[1]);
  const float lr = Scalar(params[2]), wd = Scalar(params[3]), coefficient = Scalar(params[4]);
  const float epsilon = Scalar(params[5]), inverse_scale = Scalar(params[6]);
  const bool use_clip = Scalar(params[7]) != 0.0f;
  TrustRatio trust;
  ms_lars::RunLayers<TrustRatio>(
      1, &n,
      [&](int, int64_t begin, int64_t end, double *weight_sq, double *grad_sq) {
        SliceSquares(w, g, inverse_scale, begin, end, weight_sq, grad_sq);
      },
      [&](int, double weight_sq, double grad_sq) {
        trust = FinishTrustRatio(weight_sq, grad_sq, lr, wd, coefficient, epsilon, use_clip);
        return trust;
      },
      [&](int, int64_t begin, int64_t end, const TrustRatio &layer) {
        SliceRewrite(w, g, layer.ratio * inverse_scale, layer.ratio * wd, begin, end, out);
      });
  return trust;
}

void WriteRecord(const TrustRatio &trust, float *record) {
  record[0] = trust.weight_norm;
  record[1] = trust.grad_norm;
  record[2] = trust.ratio;
}

// LarsMomentumMulti's second pass over a chunk [begin, end) of a layer (its first is
// SliceSquares), vectorized as SliceSquares.
MS_LARS_INLINE void SliceMomentumUpdateLoop(
    float *w, const float *g, float *moment, float scaled_inverse, float scaled_decay, float momentum, float lr,
    bool nesterov, int64_t begin, int64_t end) {
  if (nesterov) {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) {
      const float gi = scaled_inverse * g[i] + scaled_decay * w[i];
      const float mi = moment[i] * momentum + gi;
      moment[i] = mi;
      w[i] -= gi * lr + mi * momentum * lr;
    }
  } else {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) {
      const float gi = scaled_inverse * g[i] + scaled_decay * w[i];
      const float mi = moment[i] * momentum + gi;
      moment[i] = mi;
      w[i] -= mi * lr;
    }
  }
}
MS_LARS_SIMD_VERSIONS(SliceMomentumUpdate, SliceMomentumUpdateLoop,
                      (float *w, const float *g, float *moment, float scaled_inverse, float scaled_decay,
                       float momentum, float lr, bool nesterov, int64_t begin, int64_t end),
                      (w, g, moment, scaled_inverse, scaled_decay, momentum, lr, nesterov, begin, end))

}  // namespace

extern "C" int LarsGradient(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                            void *stream, void *extra) {
  if (nparam != 9) return 1;
  RewriteGradient(params, Elements(ndims[0], shapes[0]), static_cast<float *>(params[8]));
  return 0;
}

extern "C" int LarsGradientRecorded(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                                    void *stream, void *extra) {
  if (nparam != 10) return 1;
  const TrustRatio trust = RewriteGradient(params, Elements(ndims[0], shapes[0]), static_cast<float *>(params[8]));
  WriteRecord(trust, static_cast<float *>(params[9]));
  return 0;
}

extern "C" int LarsMomentumMulti(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                                 void *stream, void *extra) {
  if (nparam < 9 || (nparam - 6) % 3 != 0) return 1;
  const int layers = (nparam - 6) / 3;
  float *const *w = reinterpret_cast<float *const *>(params);
  float *const *g = w + layers;
  float *const *moment = w + 2 * layers;
  const int scalars = 3 * layers;
  const float *lr = static_cast<const float *>(params[scalars]);
  const float *wd = static_cast<const float *>(params[scalars + 1]);
  const bool lr_per_layer = Elements(ndims[scalars], shapes[scalars]) == layers && layers > 1;
  const bool wd_per_layer = Elements(ndims[scalars + 1], shapes[scalars + 1]) == layers && layers > 1;
  const float momentum = Scalar(params[scalars + 2]);
  const float *flags = static_cast<const float *>(params[scalars + 3]);       // [layers][2]: decay, lars
  const float *constants = static_cast<const float *>(params[scalars + 4]);   // see the header
  const float coefficient = constants[0], epsilon = constants[1], inverse_scale = constants[2];
  const bool use_clip = constants[3] != 0.0f, nesterov = constants[4] != 0.0f;
  float *record = static_cast<float *>(params[scalars + 5]);                  // [layers][3]

  struct LayerScales {   // what the second pass applies
    float scaled_inverse, scaled_decay, lr;
  };
  std::vector<int64_t> sizes(layers);
  for (int layer = 0; layer < layers; ++layer) sizes[layer] = Elements(ndims[layer], shapes[layer]);
  // Every layer, shared among the kernel threads (layer_chunks.h).
  ms_lars::RunLayers<LayerScales>(
      layers, sizes.data(),
      [&](int layer, int64_t begin, int64_t end, double *weight_sq, double *grad_sq) {
        SliceSquares(w[layer], g[layer], inverse_scale, begin, end, weight_sq, grad_sq);
      },
      [&](int layer, double weight_sq, double grad_sq) {
        const bool decay = flags[2 * layer] != 0.0f, lars = flags[2 * layer + 1] != 0.0f;
        const float layer_lr = lr[lr_per_layer ? layer : 0];
        const float layer_wd = (decay && lars) ? wd[wd_per_layer ? layer : 0] * inverse_scale : 0.0f;
        TrustRatio trust = FinishTrustRatio(weight_sq, grad_sq, layer_lr, layer_wd, coefficient, epsilon, use_clip);
        if (!lars) trust.ratio = 1.0f;   // (its norms are still recorded)
        WriteRecord(trust, record + 3 * layer);
        return LayerScales{lars ? trust.ratio * inverse_scale : inverse_scale, trust.ratio * layer_wd, layer_lr};
      },
      [&](int layer, int64_t begin, int64_t end, const LayerScales &scales) {
        SliceMomentumUpdate(w[layer], g[layer], moment[layer], scales.scaled_inverse, scales.scaled_decay, momentum,
                            scales.lr, nesterov, begin, end);
      });
  return 0;
}

// The kernels' thread count, from Python before the first kernel call (thread_pool.h).
extern "C" void LarsSetThreadCount(int threads) { ms_lars::SetThreadCount(threads); }
