"""Trust-ratio telemetry: every layer's trust ratio, recorded on the device inside the compiled step.

Constructed with ``record_trust_ratio=True``, ``ms_lars.LARS`` and ``ms_lars.Lamb`` write, at every
step, one row per parameter into a small float32 tensor they own (``trust_ratio_record``, shape
``(parameters, 3)``): the two norms that went into the parameter's trust ratio (LARS: ``||w||`` and
``||g||`` after loss-scale division; Lamb: ``||w||`` and ``||u||``) and the ratio actually applied,
after the zero-norm guard and the clip (1 for a parameter the filter skips). Nothing is read back
inside the step. ``optimizer.trust_ratios()`` copies the last step's record to the host once.

``TrustRatioMonitor`` reads it every N steps from ``Model.train`` (a ``Callback``) or from a
functional loop (``monitor.update(step)``), keeps the history, writes a CSV and can log through
``SummaryRecord``; ``plot_trust_ratios`` draws it (matplotlib, ``pip install ms_lars[plot]``).

These are the plots of You et al., "Large Batch Training of Convolutional Networks", 2017: a layer
whose ratio collapses toward 0 stops learning; one whose ratio explodes (often a norm or embedding
layer) takes steps far larger than the learning rate suggests.
"""
import csv
import math
import numbers
import os
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
from mindspore import Parameter, Tensor
from mindspore import dtype as mstype
from mindspore.ops import functional as F
from mindspore.ops import operations as P
from mindspore.train import Callback

COLUMNS = ("step", "parameter", "weight_norm", "other_norm", "trust_ratio")
_stack = P.Stack()


# ------------------------------------------------------------------------- in the optimizers' step

def record_row(weight_norm, other_norm, trust_ratio):
    """One parameter's row of the record: float32 ``[weight_norm, other_norm, trust_ratio]``."""
    return _stack((F.cast(weight_norm, mstype.float32), F.cast(other_norm, mstype.float32),
                   F.cast(trust_ratio, mstype.float32)))


def write_record(record, rows):
    """Stack the step's rows (one per parameter) into the optimizer's record, in place."""
    return F.assign(record, _stack(rows))


class RecordsTrustRatios:
    """What LARS and Lamb add for telemetry: the ``record_trust_ratio`` flag, the record, and
    ``trust_ratios()``."""

    def _init_trust_ratio_record(self, record_trust_ratio, parameters):
        self.record_trust_ratio = record_trust_ratio
        self._recorded_names = tuple(param.name for param in parameters)
        if record_trust_ratio:
            # NaN until the first step: a record that was never written cannot pass for one that was.
            self.trust_ratio_record = Parameter(Tensor(np.full((len(parameters), 3), np.nan, np.float32)),
                                                name="trust_ratio_record", requires_grad=False)

    def trust_ratios(self) -> Dict[str, Tuple[float, float, float]]:
        """The last step's record: ``{parameter name: (weight_norm, other_norm, trust_ratio)}`` of
        Python floats, in parameter order (one device-to-host copy). NaN before the first step.

        Raises:
            RuntimeError: the optimizer was constructed without ``record_trust_ratio=True``.
        """
        if not self.record_trust_ratio:
            raise RuntimeError(f"For '{type(self).__name__}', trust_ratios() needs the optimizer constructed with "
                               f"record_trust_ratio=True; this one records nothing.")
        values = self.trust_ratio_record.asnumpy().astype(np.float64)
        return {name: tuple(float(x) for x in row) for name, row in zip(self._recorded_names, values)}


# ------------------------------------------------------------------------------------ the monitor

class TrustRatioMonitor(Callback):
    r"""Reads an ``ms_lars`` optimizer's trust-ratio record every ``every`` steps and keeps it.

    The trust ratio is the per-layer factor of LARS and Lamb (You, Gitman and Ginsburg, "Large
    Batch Training of Convolutional Networks", 2017, whose plots these are):

    .. math::
        r_{\text{LARS}} = \frac{\eta \|w\|}{\|g\| + \lambda \|w\| + \epsilon}, \qquad
        r_{\text{Lamb}} = \frac{\|w\|}{\|u\|}

    (1 where a norm is 0, after the clip). A layer whose ratio collapses toward 0 stops learning;
    one whose ratio explodes takes steps far larger than the learning rate suggests.

    With ``Model.train``, pass it in ``callbacks`` (dataset sink mode on or off: with sink mode on,
    callbacks run at the end of each sink, so the record read is that of the sink's last step). In
    a functional loop, call ``monitor.update(step)`` after each optimizer step.

    Args:
        optimizer (Union[ms_lars.LARS, ms_lars.Lamb]): constructed with ``record_trust_ratio=True``.
        every (int): read the record at steps ``every``, ``2 * every``, ... Default: ``1``.
        csv_path (str): if given, write ``step,parameter,weight_norm,other_norm,trust_ratio`` rows
            there: a fresh file with its header at the monitor's first read (a file already there is
            replaced, never appended to, so two runs never mix), then rows appended and flushed at every
            read. Default: ``None``.
        summary_record (mindspore.SummaryRecord): if given, log each parameter's trust ratio as the
            scalar ``trust_ratio/<parameter>`` at each read. Default: ``None``.

    Inputs:
        - **run_context** (mindspore.train.RunContext) - as ``Model.train`` calls a Callback; or,
          through ``update(step)``, the 1-based step just taken.

    Outputs:
        None. ``update(step)`` returns whether it read; ``history`` holds what was read:
        ``{parameter name: {"step": [...], "weight_norm": [...], "other_norm": [...],
        "trust_ratio": [...]}}``.

    Raises:
        TypeError: ``optimizer`` is not an ``ms_lars`` optimizer; ``every`` is not an int.
        ValueError: ``optimizer`` does not record (``record_trust_ratio=False``); ``every <= 0``.

    Supported Platforms:
        ``Ascend`` ``GPU`` ``CPU``

    Examples:
        >>> import numpy as np
        >>> import mindspore as ms
        >>> from mindspore import Tensor, nn
        >>> import ms_lars
        >>> ms.set_context(mode=ms.PYNATIVE_MODE)
        >>> net = nn.Dense(3, 2, weight_init="ones", bias_init="zeros")
        >>> optimizer = ms_lars.LARS(nn.Momentum(net.trainable_params(), 0.1, 0.9), coefficient=0.01,
        ...                          record_trust_ratio=True)
        >>> monitor = ms_lars.TrustRatioMonitor(optimizer, every=2)
        >>> for step in (1, 2):
        ...     _ = optimizer((Tensor(np.full((2, 3), 0.5, np.float32)), Tensor(np.ones(2, np.float32))))
        ...     _ = monitor.update(step)
        >>> print(monitor.history["weight"]["step"], np.round(monitor.history["weight"]["trust_ratio"], 4))
        [2] [0.02]
        >>> print(np.round(monitor.history["bias"]["trust_ratio"], 4))
        [1.]
    """

    def __init__(self, optimizer: RecordsTrustRatios, every: int = 1,
                 csv_path: Optional[Union[str, os.PathLike]] = None, summary_record=None) -> None:
        super().__init__()
        if not isinstance(optimizer, RecordsTrustRatios):
            raise TypeError(f"For 'TrustRatioMonitor', the argument 'optimizer' must be an ms_lars.LARS or "
                            f"ms_lars.Lamb, but got {type(optimizer).__name__}.")
        if not optimizer.record_trust_ratio:
            raise ValueError("For 'TrustRatioMonitor', the argument 'optimizer' must be constructed with "
                             "record_trust_ratio=True.")
        if isinstance(every, bool) or not isinstance(every, numbers.Integral):
            raise TypeError(f"For 'TrustRatioMonitor', the type of 'every' must be int, but got "
                            f"{type(every).__name__} ({every!r}).")
        if every <= 0:
            raise ValueError(f"For 'TrustRatioMonitor', 'every' must be a positive int, but got {every}.")
        self.optimizer = optimizer
        self.every = int(every)
        self.csv_path = csv_path
        self.summary_record = summary_record
        self.history = {}
        self._last_step = 0
        self._csv_started = False

    def update(self, step: int) -> bool:
        """Read the record after optimizer step ``step`` (1-based) if a multiple of ``every`` was
        reached since the last read (steps every, 2 * every, ...; with dataset sink mode, the end of
        the sink that reached it). Returns whether it read."""
        if step // self.every <= self._last_step // self.every:
            return False
        self.read(step)
        return True

    def read(self, step: int) -> Dict[str, Tuple[float, float, float]]:
        """Read the record now and file it under ``step``; returns ``optimizer.trust_ratios()``."""
        ratios = self.optimizer.trust_ratios()
        self._last_step = step
        for name, values in ratios.items():
            series = self.history.setdefault(name, {column: [] for column in COLUMNS if column != "parameter"})
            series["step"].append(step)
            for column, value in zip(COLUMNS[2:], values):
                series[column].append(value)
        if self.csv_path is not None:
            self._append_csv(step, ratios)
        if self.summary_record is not None:
            for name, (_, _, trust_ratio) in ratios.items():
                self.summary_record.add_value("scalar", f"trust_ratio/{name}", Tensor(np.float32(trust_ratio)))
            self.summary_record.record(step)
        return ratios

    def _append_csv(self, step, ratios):
        with open(self.csv_path, "a" if self._csv_started else "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            if not self._csv_started:
                writer.writerow(COLUMNS)
                self._csv_started = True
            writer.writerows((step, name, *(repr(v) for v in values)) for name, values in ratios.items())

    # mindspore.train.Callback
    def on_train_step_end(self, run_context) -> None:
        self.update(run_context.original_args().cur_step_num)


def plot_trust_ratios(history: Dict[str, Dict[str, List[float]]], path: Optional[Union[str, os.PathLike]] = None,
                      ax=None, title: Optional[str] = None) -> "matplotlib.axes.Axes":  # noqa: F821
    r"""Draw every parameter's trust ratio over the steps (log scale), from a monitor's ``history``:
    the plots of You, Gitman and Ginsburg, "Large Batch Training of Convolutional Networks", 2017,
    one line per parameter of

    .. math::
        r_t = \text{the trust ratio applied at step } t \text{ (TrustRatioMonitor)}

    Non-positive or non-finite ratios are left out of the line (a log scale cannot show them).

    Args:
        history (dict): ``TrustRatioMonitor.history``.
        path (str): if given, save the figure there (PNG, ...). Default: ``None``.
        ax (matplotlib.axes.Axes): draw into these axes instead of a new figure. Default: ``None``.
        title (str): the axes' title. Default: ``None``.

    Inputs:
        The arguments above; needs matplotlib (``pip install 'ms_lars[plot]'``).

    Outputs:
        matplotlib.axes.Axes, the axes drawn into.

    Raises:
        ImportError: matplotlib is not installed.

    Supported Platforms:
        ``Ascend`` ``GPU`` ``CPU``

    Examples:
        >>> import ms_lars
        >>> history = {"fc.weight": {"step": [1, 2, 3], "weight_norm": [1.0, 1.0, 1.0], "other_norm": [2.0, 1.0, 0.5],
        ...                          "trust_ratio": [0.5, 1.0, 2.0]}}
        >>> ax = ms_lars.plot_trust_ratios(history, title="trust ratios")
        >>> print(ax.get_yscale(), ax.get_title(), len(ax.get_lines()))
        log trust ratios 1
    """
    try:
        import matplotlib
        if ax is None and path is not None:
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError("plot_trust_ratios needs matplotlib: pip install 'ms_lars[plot]'") from error
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    for name, series in history.items():
        ratios = [r if r > 0 and math.isfinite(r) else float("nan") for r in series["trust_ratio"]]
        ax.plot(series["step"], ratios, linewidth=1, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("trust ratio")
    if title:
        ax.set_title(title)
    if len(history) <= 12:
        ax.legend(fontsize="x-small")
    if path is not None:
        ax.figure.savefig(path, dpi=110, bbox_inches="tight")
    return ax
