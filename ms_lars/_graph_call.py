"""How LARS and Lamb run when called from Python in GRAPH_MODE on the CPU.

``nn.Cell`` runs such a call through its graph executor, which takes time growing with the square
of the length of the gradient tuple before any work is done. (``nn.Optimizer`` broadens the tuple so
that new gradient tensors do not compile the graph again; the executor then handles it element by
element against the whole.) Measured with MindSpore 2.10 on the CPU (``scripts/call_overhead.py``),
a cell that adds two of its gradients takes 1.0-2.2 ms for 20 gradients, 12-20 ms for ResNet-50's
161 and 37-52 ms for 320 (without broadening: 0.6, 2.1 and 3.7 ms, but a compile per step).
MindSpore's jit executor, which runs the same compiled ``construct`` in PyNative mode, takes 0.9-1.6,
5.9-6.8 and 8.8-10.4 ms; a LARS step on 161 four-element tensors takes 7.0-8.5 ms through it against
13.9-15.1 ms.

So a call from Python in graph mode runs ``construct`` through the jit executor, as PyNative mode
does: the same graph, compiled once for new gradient tensors as before, the same results. Inside
another graph (``TrainOneStepCell``, ``Model``, a jitted train step) ``construct`` is inlined and
none of this applies. Elsewhere (GPU and Ascend, where it is unmeasured; parallel modes;
``MS_JIT=0``; a cell with forward hooks, which ``nn.Cell`` compiles into its graph, or with its own
``set_jit_config``) the call is ``nn.Cell``'s own.
"""
import os

from mindspore import GRAPH_MODE, get_auto_parallel_context, get_context


class JitExecutorCall:
    """Mixed into LARS and Lamb ahead of ``nn.Optimizer``; ``construct`` must be ``@jit``."""

    def _init_jit_executor_call(self):
        # Chosen once, with the update path: the device does not change under a built optimizer.
        self._jit_executor_call = get_context("device_target") == "CPU" and not self.use_parallel

    def __call__(self, *args, **kwargs):
        if (self._jit_executor_call and get_context("mode") == GRAPH_MODE and os.getenv("MS_JIT") != "0"
                and get_auto_parallel_context("parallel_mode") == "stand_alone"
                and not (getattr(self, "_forward_pre_hook", None) or getattr(self, "_forward_hook", None)
                         or getattr(self, "_jit_config_dict", None))):
            return self.construct(*args, **kwargs)
        return super().__call__(*args, **kwargs)
