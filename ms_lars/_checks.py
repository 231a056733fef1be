"""Input checks, their one home: constructor arguments of LARS, Lamb, the experimental classes and
the telemetry, and the gradient tuple a step is given (checked while the step compiles, before
anything is written). Messages follow MindSpore's: "For 'LARS', the type of 'use_clip' must be ..."."""
import math
import numbers
import typing
from collections.abc import Iterable
from typing import Any, Dict, Union

from mindspore import Parameter, Tensor, get_context
from mindspore import __version__ as ms_version
from mindspore import dtype as mstype
from mindspore import _checkparam as validator
from mindspore.nn import Cell
from mindspore.nn.learning_rate_schedule import LearningRateSchedule
from mindspore.ops import composite as C
from mindspore.ops import functional as F
from mindspore.ops.primitive import _primexpr

# The argument types the public constructors take (their type hints): what MindSpore's own accept.
Params = Union[typing.Iterable[Parameter], typing.Iterable[Dict[str, Any]]]
LearningRate = Union[float, int, Tensor, typing.Iterable[float], LearningRateSchedule]


def check_non_negative_finite_float(optimizer, name, value):
    """TypeError unless ``value`` is a float; ValueError unless it is finite and >= 0."""
    if not isinstance(value, float):
        raise TypeError(f"For '{optimizer}', the type of '{name}' must be float, but got {type(value).__name__} "
                        f"({value!r}).")
    if not math.isfinite(value) or value < 0.0:
        raise ValueError(f"For '{optimizer}', '{name}' must be a finite float >= 0, but got {value!r}.")


def check_bool(optimizer, name, value):
    """TypeError unless ``value`` is a bool; returns it."""
    if not isinstance(value, bool):
        raise TypeError(f"For '{optimizer}', the type of '{name}' must be bool, but got {type(value).__name__} "
                        f"({value!r}).")
    return value


def check_number(optimizer, name, value, low=0.0, below=None):
    """TypeError unless ``value`` is a real number (not a bool); ValueError unless it is finite and
    low <= value (< below). Returns it as a float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"For '{optimizer}', the type of '{name}' must be float or int, but got "
                        f"{type(value).__name__} ({value!r}).")
    if not math.isfinite(value) or value < low or (below is not None and value >= below):
        bound = f"in [{low}, {below})" if below is not None else f">= {low}"
        raise ValueError(f"For '{optimizer}', '{name}' must be {bound}, but got {value!r}.")
    return float(value)


def check_params(optimizer, params):
    """``params`` as a list: any iterable ``nn.Optimizer`` accepts (a list, a tuple, a generator such as
    ``net.get_parameters()``) of Parameters, or of group dicts. Read once, so a generator is not spent
    twice."""
    if isinstance(params, (str, bytes, dict, Tensor)) or not isinstance(params, Iterable):
        raise TypeError(f"For '{optimizer}', the argument 'params' must be an iterable (list, tuple or generator) of "
                        f"Parameter or dict, but got {type(params).__name__} ({params!r}).")
    kind = type(params).__name__
    params = list(params)
    if not params:
        raise ValueError(f"For '{optimizer}', the argument 'params' must not be empty, but got an empty {kind}.")
    if not (all(isinstance(p, Parameter) for p in params) or all(isinstance(p, dict) for p in params)):
        bad = next((p for p in params if not isinstance(p, (Parameter, dict))), params[0])
        raise TypeError(f"For '{optimizer}', every element of the argument 'params' must be a Parameter, or every "
                        f"one a dict, but got {type(bad).__name__} ({bad!r}).")
    return params


def check_lamb_arguments(params, learning_rate, beta1, beta2, eps, weight_decay):
    """Refuse bad input at construction, naming the argument and the value (before nn.Optimizer,
    whose messages say 'parameters' and accept a str learning rate as an Iterable). Returns
    ``params`` as a list."""
    params = check_params("Lamb", params)
    accepted_lr = (float, int, Tensor, LearningRateSchedule, Iterable)
    if isinstance(learning_rate, (bool, str)) or not isinstance(learning_rate, accepted_lr):
        raise TypeError(f"For 'Lamb', the argument 'learning_rate' must be float, int, Tensor, Iterable or "
                        f"LearningRateSchedule, but got {type(learning_rate).__name__} ({learning_rate!r}).")
    for name, value in (("beta1", beta1), ("beta2", beta2), ("eps", eps)):
        validator.check_value_type(name, value, [float], "Lamb")
    validator.check_float_range(beta1, 0.0, 1.0, validator.INC_NEITHER, "beta1", "Lamb")
    validator.check_float_range(beta2, 0.0, 1.0, validator.INC_NEITHER, "beta2", "Lamb")
    validator.check_positive_float(eps, "eps", "Lamb")
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (float, int, Cell)):
        raise TypeError(f"For 'Lamb', the argument 'weight_decay' must be float, int or Cell, but got "
                        f"{type(weight_decay).__name__} ({weight_decay!r}).")
    if not isinstance(weight_decay, Cell) and weight_decay < 0:
        raise ValueError(f"For 'Lamb', the argument 'weight_decay' must be >= 0, but got {weight_decay!r}.")
    return params


@_primexpr
def _check_all(optimizer, names, param_shapes, param_dtypes, grad_shapes, grad_dtypes):
    if len(grad_shapes) != len(names):
        raise ValueError(f"For '{optimizer}', the step got {len(grad_shapes)} gradients for {len(names)} parameters; "
                         f"nothing was updated.")
    for name, param_shape, param_dtype, grad_shape, grad_dtype in zip(names, param_shapes, param_dtypes,
                                                                      grad_shapes, grad_dtypes):
        if tuple(param_shape) != tuple(grad_shape):
            raise ValueError(f"For '{optimizer}', the gradient of '{name}' has shape {tuple(grad_shape)}, but the "
                             f"parameter has shape {tuple(param_shape)}; nothing was updated.")
        if param_dtype != grad_dtype:
            raise TypeError(f"For '{optimizer}', the gradient of '{name}' is {grad_dtype}, but the parameter is "
                            f"{param_dtype}; nothing was updated.")


_FLOAT_TYPES = (mstype.float16, mstype.float32, mstype.float64, mstype.bfloat16)


def check_parameter_dtypes(optimizer, params):
    """Refuse, at construction and naming the parameter, what no step could update: a parameter that is
    not floating point, and a bfloat16 one on the CPU (MindSpore's CPU backend has no bfloat16 Assign)."""
    on_cpu = get_context("device_target") == "CPU"
    for param in params:
        if param.dtype not in _FLOAT_TYPES:
            raise TypeError(f"For '{optimizer}', parameter '{param.name}' is {param.dtype}: only float16, float32, "
                            f"float64 and bfloat16 parameters can be trained.")
        if on_cpu and param.dtype == mstype.bfloat16:
            raise TypeError(f"For '{optimizer}', parameter '{param.name}' is BFloat16, which MindSpore {ms_version} "
                            f"cannot update on the CPU (its CPU Assign has no bfloat16 kernel); use float16 or float32 "
                            f"there.")


def gradient_signature(params):
    """(names, shapes, dtypes) of an optimizer's parameters, taken at construction: what every
    step's gradient tuple must match."""
    return (tuple(param.name for param in params), tuple(tuple(param.shape) for param in params),
            tuple(param.dtype for param in params))


_map = C.Map()


def check_gradients(optimizer, signature, gradients):
    """Refuse a gradient tuple of the wrong length, or a gradient of the wrong shape or dtype.

    Shapes and dtypes are constants of the compiled step, so one check of the whole tuple runs
    while the step compiles: a mismatch stops it before anything is written (a wrong shape could
    otherwise broadcast silently).
    """
    names, shapes, dtypes = signature
    _check_all(optimizer, names, shapes, dtypes, _map(F.shape, gradients), _map(F.dtype, gradients))
