"""Float64 NumPy implementations of the formulas of docs/formulas.md, independent of the code under test.

Everything here is plain NumPy: LARS's gradient rewrite, the two inner optimizers the cases wrap
(MindSpore's Momentum and SGD rules), and Lamb, and the error measure every comparison uses.
Schedules are functions of the 0-based step. The tests and ``python -m ms_lars.check`` both use
this module, so what they hold the optimizers to cannot drift apart.
"""
import numpy as np


def norm(x):
    return float(np.sqrt(np.sum(np.square(x, dtype=np.float64))))


def lars_record(w, g, lr, wd, *, lars, coefficient, epsilon, use_clip, loss_scale=1.0):
    """What LARS records for one layer (telemetry): ``(||w||, ||g / S||, ratio applied)``, the ratio
    guarded and clipped, and 1 for a layer the filter skips."""
    w = np.asarray(w, np.float64)
    g = np.asarray(g, np.float64) / loss_scale
    w_norm, g_norm = norm(w), norm(g)
    if not lars:
        return w_norm, g_norm, 1.0
    if w_norm > 0 and g_norm > 0:
        ratio = coefficient * w_norm / (g_norm + wd * w_norm + epsilon)
    else:
        ratio = 1.0
    if use_clip:
        ratio = min(ratio / lr, 1.0)
    return w_norm, g_norm, ratio


def lars_gradient(w, g, lr, wd, *, lars, coefficient, epsilon, use_clip, loss_scale=1.0):
    """docs/formulas.md "LARS": g / S, then ratio * (g + wd * w) for filtered layers (wd = 0 where decay is off)."""
    g = np.asarray(g, np.float64) / loss_scale
    if not lars:
        return g
    _, _, ratio = lars_record(w, g, lr, wd, lars=lars, coefficient=coefficient, epsilon=epsilon, use_clip=use_clip)
    return ratio * (g + wd * np.asarray(w, np.float64))


class MomentumRule:
    """mindspore.nn.Momentum as documented: v = mu * v + g; w -= lr * v, or with Nesterov
    w -= g * lr + v * mu * lr."""

    def __init__(self, momentum, nesterov=False):
        self.momentum = momentum
        self.nesterov = nesterov

    def init_state(self, w):
        return np.zeros_like(w)

    def apply(self, w, g, lr, v):
        v = self.momentum * v + g
        if self.nesterov:
            return w - (g * lr + v * self.momentum * lr), v
        return w - lr * v, v


class SGDRule:
    """mindspore.nn.SGD (dampening 0, no nesterov): with momentum > 0, v = g on the first step and
    then v = mu * v + g, w -= lr * v; with momentum 0, w -= lr * g and v (its ``accum``) stays 0."""

    def __init__(self, momentum):
        self.momentum = momentum

    def init_state(self, w):
        return None

    def apply(self, w, g, lr, v):
        if self.momentum == 0:
            return w - lr * g, (np.zeros_like(g) if v is None else v)
        v = g if v is None else self.momentum * v + g
        return w - lr * v, v


def run_lars(weights, grads_per_step, *, rule, lr_of, wd_of, decay_flags, lars_flags, coefficient, epsilon,
             use_clip, loss_scale=1.0, records=None):
    """Steps LARS(rule) over the gradient list; returns final weights and inner states.
    ``records``: a list to which each step's ``[lars_record per layer]`` is appended.

    ``lr_of(i, step)`` / ``wd_of(i, step)``: learning rate and weight decay of parameter i at a
    0-based step. ``grads_per_step[step][i]`` is the (already loss-scaled) gradient.
    """
    weights = [np.asarray(w, np.float64) for w in weights]
    states = [rule.init_state(w) for w in weights]
    for step, grads in enumerate(grads_per_step):
        if records is not None:
            records.append([lars_record(w, g, lr_of(i, step), wd_of(i, step) if decay_flags[i] else 0.0,
                                        lars=lars_flags[i], coefficient=coefficient, epsilon=epsilon,
                                        use_clip=use_clip, loss_scale=loss_scale)
                            for i, (w, g) in enumerate(zip(weights, grads))])
        for i, (w, g) in enumerate(zip(weights, grads)):
            lr = lr_of(i, step)
            wd = wd_of(i, step) if decay_flags[i] else 0.0
            new_g = lars_gradient(w, g, lr, wd, lars=lars_flags[i], coefficient=coefficient, epsilon=epsilon,
                                  use_clip=use_clip, loss_scale=loss_scale)
            weights[i], states[i] = rule.apply(w, new_g, lr, states[i])
    return weights, states


def lamb_direction(w, m, v, g, t, wd, beta1, beta2, eps):
    """docs/formulas.md "Lamb"'s new m, v and update u at step t (1-based), in float64.

    Lamb holds beta1, beta2 and eps as float32 tensors, as nn.Lamb does, so the reference takes
    those values: 1 - 0.999 differs from 1 - float32(0.999) by 1.3e-5 relative."""
    beta1, beta2, eps = (float(np.float32(x)) for x in (beta1, beta2, eps))
    w, m, v, g = (np.asarray(x, np.float64) for x in (w, m, v, g))
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    m_hat = m / (1 - beta1 ** t)
    v_hat = v / (1 - beta2 ** t)
    return m, v, m_hat / (np.sqrt(v_hat) + eps) + wd * w


def lamb_record(w, u):
    """What Lamb records for one parameter (telemetry): ``(||w||, ||u||, ratio applied)``."""
    w_norm, u_norm = norm(w), norm(u)
    return w_norm, u_norm, (w_norm / u_norm if w_norm > 0 and u_norm > 0 else 1.0)


def lamb_step(w, m, v, g, t, lr, wd, beta1, beta2, eps, records=None):
    """One step of docs/formulas.md "Lamb" at step t (1-based); returns the new w, m, v in float64.
    ``records``: a list to which the step's ``lamb_record`` is appended."""
    w = np.asarray(w, np.float64)
    m, v, u = lamb_direction(w, m, v, g, t, wd, beta1, beta2, eps)
    record = lamb_record(w, u)
    if records is not None:
        records.append(record)
    return w - lr * record[2] * u, m, v


def run_lamb(weights, grads_per_step, *, lr_of, wd_of, decay_flags, beta1=0.9, beta2=0.999, eps=1e-6, records=None):
    """docs/formulas.md "Lamb" over the gradient list; returns final weights, m and v. ``records``: a list to
    which each step's ``[lamb_record per parameter]`` is appended."""
    weights = [np.asarray(w, np.float64) for w in weights]
    ms = [np.zeros_like(w) for w in weights]
    vs = [np.zeros_like(w) for w in weights]
    for step, grads in enumerate(grads_per_step):
        step_records = []
        for i, g in enumerate(grads):
            wd = wd_of(i, step) if decay_flags[i] else 0.0
            weights[i], ms[i], vs[i] = lamb_step(weights[i], ms[i], vs[i], g, step + 1, lr_of(i, step), wd,
                                                 beta1, beta2, eps, records=step_records)
        if records is not None:
            records.append(step_records)
    return weights, ms, vs


def centralize(g):
    """MindSpore's gradient centralization: subtract the mean over all axes but the first."""
    return g - g.mean(axis=tuple(range(1, g.ndim)), keepdims=True)


def relative_error(actual, expected, floor=1e-2):
    """Worst relative error of ``actual`` against the float64 ``expected``.

    An element's error is taken relative to the larger of itself and ``floor`` times the tensor's
    largest magnitude, so that an element that happens to sit near zero is not held to a float32
    rounding of its neighbours' size.
    """
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    if actual.shape != expected.shape:
        return float("inf")
    if actual.size == 0:
        return 0.0
    scale = np.maximum(np.abs(expected), floor * max(float(np.max(np.abs(expected))), 1e-30))
    error = np.abs(actual - expected) / scale
    return float("inf") if not np.all(np.isfinite(actual)) else float(np.max(error))


# ------------------------------------------------------------- timm 1.0's Lars and Lamb (ms_lars.experimental)

def timm_lars_step(w, g, buffer, *, first, lr, momentum, dampening, weight_decay, nesterov, trust_coeff, eps,
                   trust_clip, always_adapt):
    """One step of timm 1.0's ``Lars`` for one parameter; returns the new w and momentum buffer (float64).
    The trust ratio and the rewrite are LARS's (``lars_gradient``, guard and clip included)."""
    w, g = np.asarray(w, np.float64), np.asarray(g, np.float64)
    if weight_decay != 0 or always_adapt:
        g = lars_gradient(w, g, lr, weight_decay, lars=True, coefficient=trust_coeff, epsilon=eps,
                          use_clip=trust_clip)
    if momentum != 0:
        buffer = g.copy() if first else momentum * buffer + (1.0 - dampening) * g
        g = g + momentum * buffer if nesterov else buffer
    return w - lr * g, buffer


def run_timm_lars(weights, grads_per_step, *, hyper_of, lr_of):
    """timm's Lars over the gradient list; ``hyper_of(i)``: parameter i's group hyperparameters (a
    dict of timm_lars_step's keywords but lr), ``lr_of(i, step)`` its lr. Returns weights and buffers."""
    weights = [np.asarray(w, np.float64) for w in weights]
    buffers = [np.zeros_like(w) for w in weights]
    for step, grads in enumerate(grads_per_step):
        for i, g in enumerate(grads):
            weights[i], buffers[i] = timm_lars_step(weights[i], g, buffers[i], first=step == 0, lr=lr_of(i, step),
                                                    **hyper_of(i))
    return weights, buffers


def timm_lamb_clip_divisor(grads, max_grad_norm):
    """timm's global-norm clip: the gradients are divided by max(||(g_1, ..., g_n)|| / max_grad_norm, 1)."""
    if max_grad_norm is None:
        return 1.0
    return max(np.sqrt(sum(norm(g) ** 2 for g in grads)) / max_grad_norm, 1.0)


def timm_lamb_step(w, m, v, g, t, *, lr, betas, eps, weight_decay, bias_correction, grad_averaging, trust_clip,
                   always_adapt):
    """One step of timm 1.0's ``Lamb`` (step t, 1-based) for one clipped gradient; returns w, m, v."""
    w, g = np.asarray(w, np.float64), np.asarray(g, np.float64)
    beta1, beta2 = betas
    beta3 = 1.0 - beta1 if grad_averaging else 1.0
    bias_correction1 = 1.0 - beta1 ** t if bias_correction else 1.0
    bias_correction2 = 1.0 - beta2 ** t if bias_correction else 1.0
    m = beta1 * m + beta3 * g
    v = beta2 * v + (1.0 - beta2) * g * g
    update = (m / bias_correction1) / (np.sqrt(v) / np.sqrt(bias_correction2) + eps)
    if weight_decay != 0:
        update = update + weight_decay * w
    if weight_decay != 0 or always_adapt:
        ratio = lamb_record(w, update)[2]
        update = update * (min(ratio, 1.0) if trust_clip else ratio)
    return w - lr * update, m, v


def run_timm_lamb(weights, grads_per_step, *, hyper_of, lr_of, max_grad_norm):
    """timm's Lamb over the gradient list (``hyper_of``, ``lr_of`` as run_timm_lars); returns w, m, v."""
    weights = [np.asarray(w, np.float64) for w in weights]
    ms = [np.zeros_like(w) for w in weights]
    vs = [np.zeros_like(w) for w in weights]
    for step, grads in enumerate(grads_per_step):
        divisor = timm_lamb_clip_divisor(grads, max_grad_norm)
        for i, g in enumerate(grads):
            weights[i], ms[i], vs[i] = timm_lamb_step(weights[i], ms[i], vs[i], np.asarray(g, np.float64) / divisor,
                                                      step + 1, lr=lr_of(i, step), **hyper_of(i))
    return weights, ms, vs
