"""Where ms_lars touches MindSpore's own modules: boost's LARS, and ``patch_mindspore()``.

Two things, both about names that MindSpore's modules bind, and nothing else in ms_lars rebinds any:

* **Boost** (``Model(..., boost_level="O1"|"O2")``): ``mindspore.boost.base`` and
  ``mindspore.boost.grad_freeze`` test ``isinstance(opt, LARS)`` against the ``nn.LARS`` they
  imported, unwrap ``opt.opt`` and rebuild ``LARS(type(opt.opt)(params=..., learning_rate=...,
  **opt.opt.init_args), **opt.init_args)``. ``import ms_lars`` binds their ``LARS`` to
  ``BoostLARS``: an instance of either LARS passes its ``isinstance``, and calling it rebuilds the
  class that was given. An ``nn.LARS`` is rebuilt as ``nn.LARS``, with the same arguments, so code
  that uses ``nn.LARS`` sees no change.
* **The patch** (``patch_mindspore()``, and ``python -m ms_lars.patch SCRIPT``): from the call on,
  ``mindspore.nn.LARS`` / ``Lamb``, ``mindspore.nn.optim.LARS`` / ``Lamb`` and boost's ``LARS`` are
  ms_lars's, and so are mindformers' registry entries where mindformers is imported. The defining
  modules ``mindspore.nn.optim.lars`` / ``.lamb`` keep MindSpore's classes: pickle finds a class by
  its module and name, and MindSpore's stay reachable there (``mindspore_classes()``).
"""
import importlib
import logging
import sys

from ms_lars.lamb import Lamb
from ms_lars.lars import LARS

logger = logging.getLogger("ms_lars")

# (module, name) of every binding the patch replaces, and the class it binds there.
PATCHED_BINDINGS = (
    ("mindspore.nn", "LARS", LARS),
    ("mindspore.nn", "Lamb", Lamb),
    ("mindspore.nn.optim", "LARS", LARS),
    ("mindspore.nn.optim", "Lamb", Lamb),
    ("mindspore.boost.base", "LARS", LARS),
    ("mindspore.boost.grad_freeze", "LARS", LARS),
)
BOOST_MODULES = ("mindspore.boost.base", "mindspore.boost.grad_freeze")


def mindspore_classes():
    """MindSpore's own (LARS, Lamb), from the modules that define them: what the patch never replaces."""
    return importlib.import_module("mindspore.nn.optim.lars").LARS, importlib.import_module("mindspore.nn.optim.lamb").Lamb


class _EitherLARS(type):
    """BoostLARS's type: ``isinstance`` accepts both LARS classes, a call builds the one meant."""

    def __instancecheck__(cls, instance):
        return isinstance(instance, (mindspore_classes()[0], LARS))

    def __subclasscheck__(cls, subclass):
        return issubclass(subclass, (mindspore_classes()[0], LARS))

    def __call__(cls, optimizer, **lars_init_args):
        # Boost passes the first LARS's init_args back. ms_lars.LARS's hold arguments that
        # nn.LARS does not take (record_trust_ratio): those are ms_lars's, and only those.
        if set(lars_init_args) - set(_NN_LARS_ARGUMENTS):
            return LARS(optimizer, **lars_init_args)
        return mindspore_classes()[0](optimizer, **lars_init_args)


_NN_LARS_ARGUMENTS = ("epsilon", "coefficient", "use_clip", "lars_filter")


class BoostLARS(metaclass=_EitherLARS):
    """What ``mindspore.boost``'s modules call ``LARS`` once ms_lars is imported: ``isinstance(opt,
    BoostLARS)`` holds for ``nn.LARS`` and ``ms_lars.LARS``, and ``BoostLARS(inner, **opt.init_args)``
    rebuilds the same class as ``opt``."""


def install_boost_support():
    """Bind boost's ``LARS`` to ``BoostLARS`` where it is still MindSpore's ``nn.LARS`` (at import)."""
    original = mindspore_classes()[0]
    for module_name in BOOST_MODULES:
        module = sys.modules.get(module_name)
        if module is None:
            try:
                module = importlib.import_module(module_name)
            except ImportError:     # a MindSpore without boost: nothing to support
                continue
        if getattr(module, "LARS", None) is original:
            module.LARS = BoostLARS


class MindSporePatch:
    """What ``patch_mindspore()`` replaced; ``undo()`` (or leaving its ``with`` block) puts it back."""

    def __init__(self, replaced, registry_entries):
        self.replaced = replaced                   # [(module, name, previous value)]
        self._registry_entries = registry_entries  # [(mindformers name, previous class)]
        self._undone = False

    @property
    def bindings(self):
        """The bindings replaced, as ``'module.name'``."""
        return [f"{module.__name__}.{name}" for module, name, _ in self.replaced] + \
            [f"mindformers registry: optimizer {name}" for name, _ in self._registry_entries]

    def undo(self):
        """Restore every binding this patch replaced, exactly as it was; a second call does nothing."""
        if self._undone:
            return
        self._undone = True
        for module, name, previous in reversed(self.replaced):
            setattr(module, name, previous)
        register = _mindformers_registry()
        if register is not None:
            restored = dict(self._registry_entries)
            # A mindformers imported while patched registered ms_lars's classes by itself: MindSpore's
            # go back there too, so that no ms_lars entry outlives the patch.
            for cls, original in zip((LARS, Lamb), mindspore_classes()):
                if _registered(register, cls.__name__) is cls:
                    restored.setdefault(cls.__name__, original)
            for name, previous in restored.items():
                register.register_cls(previous, _optimizer_module_type(), alias=name)
        if self.replaced or self._registry_entries:
            logger.info("ms_lars: MindSpore's own LARS and Lamb restored: %s", ", ".join(self.bindings))

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.undo()
        return False


def _mindformers_registry():
    """mindformers' MindFormerRegister where mindformers is imported, else None (never imported here)."""
    if "mindformers" not in sys.modules:
        return None
    try:
        return importlib.import_module("mindformers.tools.register").MindFormerRegister
    except ImportError:
        return None


def _optimizer_module_type():
    return importlib.import_module("mindformers.tools.register").MindFormerModuleType.OPTIMIZER


def _registered(register, name):
    """The class mindformers' registry holds as optimizer ``name``, or None."""
    return register.registry.get(_optimizer_module_type(), {}).get(name)


def _patch_mindformers_registry():
    """Replace mindformers' optimizer entries LARS and Lamb (registered from ``dir(mindspore.nn.optim)``
    when it was imported) through its public ``register_cls``. [(name, previous class)]."""
    register = _mindformers_registry()
    if register is None:
        return []
    replaced = []
    for cls in (LARS, Lamb):
        previous = _registered(register, cls.__name__)
        if previous is None or previous is cls:
            continue
        register.register_cls(cls, _optimizer_module_type(), alias=cls.__name__)
        replaced.append((cls.__name__, previous))
    return replaced


def patch_mindspore():
    """Make MindSpore's names for LARS and Lamb mean ms_lars's, from this call on.

    Replaces ``mindspore.nn.LARS``, ``mindspore.nn.Lamb``, ``mindspore.nn.optim.LARS``,
    ``mindspore.nn.optim.Lamb``, and ``LARS`` in ``mindspore.boost.base`` and
    ``mindspore.boost.grad_freeze``; where mindformers is already imported, its registry's ``LARS``
    and ``Lamb`` too (a mindformers imported later registers ms_lars's by itself). So code that
    looks the names up after the call builds ms_lars's: ``nn.Lamb(...)``, ``from mindspore.nn.optim
    import Lamb``, mindcv's and mindocr's optimizer factories, a mindformers YAML ``type: Lamb``.

    Not replaced: a name bound before the call (``from mindspore.nn import Lamb`` earlier keeps
    MindSpore's class), and the defining modules ``mindspore.nn.optim.lars`` / ``.lamb``, so that
    pickle still finds MindSpore's classes. A second call while patched replaces nothing.

    Returns:
        MindSporePatch: ``undo()`` restores exactly what was replaced; ``with
        ms_lars.patch_mindspore():`` undoes on leaving the block. Its ``bindings`` lists them.

    Examples:
        >>> from mindspore import nn
        >>> import ms_lars
        >>> with ms_lars.patch_mindspore() as patch:
        ...     print(nn.Lamb is ms_lars.Lamb, len(patch.bindings))
        True 6
        >>> nn.Lamb is ms_lars.Lamb
        False
    """
    replaced = []
    for module_name, name, cls in PATCHED_BINDINGS:
        try:
            module = importlib.import_module(module_name)
        except ImportError:     # a MindSpore without boost
            continue
        previous = getattr(module, name, None)
        if previous is cls:
            continue
        setattr(module, name, cls)
        replaced.append((module, name, previous))
    patch = MindSporePatch(replaced, _patch_mindformers_registry())
    if patch.replaced or patch._registry_entries:  # pylint: disable=protected-access
        logger.info("ms_lars: MindSpore's LARS and Lamb are now ms_lars's: %s", ", ".join(patch.bindings))
    else:
        logger.info("ms_lars: MindSpore is already patched; nothing replaced")
    return patch
