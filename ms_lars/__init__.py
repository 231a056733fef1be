"""LARS and Lamb for MindSpore 2.x: drop-in replacements for ``mindspore.nn.LARS`` and
``mindspore.nn.Lamb`` that run on CPU, GPU and Ascend, in graph and PyNative mode."""
from ms_lars._version import __version__
from ms_lars.lamb import Lamb
from ms_lars.lars import LARS
from ms_lars.telemetry import TrustRatioMonitor, plot_trust_ratios
from ms_lars._mindspore_bindings import install_boost_support, patch_mindspore

# MindSpore's boost (Model(..., boost_level="O1"|"O2")) rebuilds the LARS it is given: from here on
# it recognises and rebuilds ms_lars.LARS too, and nn.LARS as before (_mindspore_bindings.py).
install_boost_support()

__all__ = ["LARS", "Lamb", "TrustRatioMonitor", "patch_mindspore", "plot_trust_ratios", "__version__"]
