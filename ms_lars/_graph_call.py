"""How LARS and Lamb run when called from Python on the CPU, in GRAPH_MODE and PYNATIVE_MODE.

``nn.Cell`` runs such a call through its graph executor, which takes time growing with the square
of the length of the gradient tuple before any work is done. (``nn.Optimizer`` broadens the tuple so
that new gradient tensors do not compile the graph again; the executor then handles it element by
element against the whole.) MindSpore's jit executor, which runs the same compiled ``construct`` in
PyNative mode, takes time growing linearly with it. ``scripts/call_overhead.py`` times both; its
figures are in docs/speed.md ("The call").

So a call from Python in graph mode runs ``construct`` through the jit executor, as PyNative mode
does: the same graph, compiled once for new gradient tensors as before, the same results. (In
PyNative mode it ran there already; it now takes the same path, for the wait below.) Inside
another graph (``TrainOneStepCell``, ``Model``, a jitted train step) ``construct`` is inlined and
none of this applies.

Such a call also waits for its step to finish, asleep. The step's own output is what the
MindSpore optimizer returns, constants (a tuple of ``True``), which the call hands back before the
step has run; the next call then waits for it inside MindSpore (``Pipeline::WaitAll``), spinning on
one core, so on a 2-core machine the kernels' second thread had no core to run on, and 2 threads
stepped slower than one (docs/speed.md, "The second thread"). So the graph also returns a one-element
tensor made after the step, and the call reads it: that wait sleeps (``StubNode::WaitValue``), as
0.4.0's did when its step returned a tensor.

Elsewhere (GPU and Ascend, where it is unmeasured; parallel modes;
``MS_JIT=0``; a cell with forward hooks, which ``nn.Cell`` compiles into its graph, or with its own
``set_jit_config``) the call is ``nn.Cell``'s own.
"""
import os

from mindspore import get_auto_parallel_context, get_context, jit
from mindspore.ops import functional as F


class JitExecutorCall:
    """Mixed into LARS and Lamb ahead of ``nn.Optimizer``; ``construct`` must be ``@jit``."""

    def _init_jit_executor_call(self):
        # Chosen once, with the update path: the device does not change under a built optimizer.
        self._jit_executor_call = get_context("device_target") == "CPU" and not self.use_parallel

    def __call__(self, *args, **kwargs):
        if (self._jit_executor_call and os.getenv("MS_JIT") != "0"
                and get_auto_parallel_context("parallel_mode") == "stand_alone"
                and not (getattr(self, "_forward_pre_hook", None) or getattr(self, "_forward_hook", None)
                         or getattr(self, "_jit_config_dict", None))):
            result, finished = self._step_and_finish_marker(*args, **kwargs)
            finished.asnumpy()      # waits asleep for the step (see above)
            return result
        return super().__call__(*args, **kwargs)

    @jit
    def _step_and_finish_marker(self, *args, **kwargs):
        """(construct's result, a one-element tensor computed once the step is done)."""
        result = self.construct(*args, **kwargs)
        # (global_step itself, a Parameter, would make MindSpore run the graph on this thread.)
        return result, F.depend(self.global_step * 1, result)
