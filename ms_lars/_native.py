"""Fused CPU kernels, loaded by MindSpore as AOT custom ops.

An installed package carries them compiled (``ms_lars/kernels/<kernel>-<arch>-<digest>.so``, built
by setup.py). A source tree without them (a checkout on ``PYTHONPATH``, a kernel edited since it was
built) compiles them at first use with the system C++ compiler (``$CXX``, else ``g++``) into
``$MS_LARS_CACHE`` (default ``~/.cache/ms_lars``), under the same name. Nothing is downloaded.
Where neither works, or ``MS_LARS_NO_CPU_KERNELS=1`` is set, the optimizers use their composed-op
path instead (slower, same formula; the tests check that the two agree).

What is loaded, and from where, is decided here and nowhere else:

- A library is loaded once from Python (ctypes) before its path is chosen, so a damaged file or
  one of another architecture is rebuilt (or, failing that, the composed path runs with a
  warning), never a C++ error inside MindSpore at the first step.
- The cache is trusted as ssh trusts its keys: a cache directory or library that another user owns
  or can write is never loaded from. Kernels are then built into a private directory for this
  process, with one warning that names the directory and what to do. New cache directories are 0700.
- Builds go to a temporary name and are renamed once they load: concurrent builds (msrun workers
  from a source tree) each end with a whole, loadable library.
"""
import atexit
import ctypes
import logging
import os
import shutil
import stat
import tempfile
import warnings

from mindspore import dtype as mstype
from mindspore import get_context, ops
from mindspore.ops import composite as C
from mindspore.ops import functional as F
from mindspore.ops import operations as P

from ms_lars._kernel_build import (FUNCTIONS, SOURCE_DIR, THREAD_COUNT_SETTERS, build_failure, compile_kernel,
                                   compiler_target, find_compiler, host_architecture, kernel_thread_count,
                                   library_name)

logger = logging.getLogger("ms_lars")
_built = {}          # source name -> the library's path, or None where there is none to use
_unavailable = {}    # source name -> why it has none
_ops = {}
_private_dir = None  # this process's own cache, where the shared one cannot be trusted
_loaded = set()      # paths ctypes has loaded: a rebuild must not reuse one (dlopen would find the old library)
_warned = set()      # directories a warning has named


def _cache_dir():
    return os.environ.get("MS_LARS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "ms_lars")


def _distrust(path):
    """Why ``path`` (a cache directory, or a library in one) must not be loaded from: another
    user owns it, or others (group or anyone) can write it; None where it is this user's alone."""
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        return f"{path} is a symbolic link"
    if info.st_uid != os.geteuid():
        return f"{path} is owned by another user (uid {info.st_uid})"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{path} can be written by other users (mode {stat.S_IMODE(info.st_mode):o})"
    return None


def _load_failure(library, source_name):
    """Why ``library`` cannot serve as ``source_name``'s kernels here (it does not load, or lacks
    a function), or None once it has loaded: only then may MindSpore load it. A library that loads
    is given its thread count (_kernel_build.kernel_thread_count), before any of its kernels can run."""
    try:
        loaded = ctypes.CDLL(library)
    except OSError as error:
        return str(error)
    _loaded.add(os.path.realpath(library))
    setter = THREAD_COUNT_SETTERS[source_name]
    missing = [name for name in (*FUNCTIONS[source_name], setter) if not hasattr(loaded, name)]
    if missing:
        return f"{library} lacks {', '.join(missing)}"
    getattr(loaded, setter)(ctypes.c_int(kernel_thread_count()))
    return None


def _private_cache():
    """A directory only this process uses (0700), removed at exit."""
    global _private_dir
    if _private_dir is None:
        _private_dir = tempfile.mkdtemp(prefix="ms_lars-kernels-")
        atexit.register(shutil.rmtree, _private_dir, True)
    return _private_dir


def _trusted_cache():
    """The cache directory to load from: ``_cache_dir()``, created 0700 if need be, where it is
    this user's alone; else, after one warning, a private one."""
    cache = _cache_dir()
    try:
        os.makedirs(cache, mode=0o700, exist_ok=True)
    except OSError as error:   # a regular file, a read-only file system, no permission
        _warn_once(cache, f"ms_lars: the kernel cache {cache} cannot be created ({error.strerror or error}). "
                          f"{_PRIVATE_INSTEAD}")
        return _private_cache()
    reason = _distrust(cache)
    if reason is None:
        return cache
    _warn_once(cache, f"ms_lars: not loading CPU kernels from the cache directory {cache}: {reason}. Make it yours "
                      f"alone (chown $USER {cache}; chmod 700 {cache}) or set MS_LARS_CACHE to a directory only you "
                      f"can write. Building into a private directory for this process instead.")
    return _private_cache()


_PRIVATE_INSTEAD = ("Building the CPU kernels into a private directory for this process instead; set MS_LARS_CACHE "
                    "to a writable directory on a file system that allows executables to keep them between runs.")


def _warn_once(directory, message):
    if directory not in _warned:
        _warned.add(directory)
        warnings.warn(message, RuntimeWarning)


def _cannot_hold_libraries(directory):
    """Why a library built into ``directory`` could not be written or loaded (a read-only or
    noexec mount, no write permission); None where it can."""
    flags = os.statvfs(directory).f_flag
    if flags & os.ST_RDONLY:
        return "it is on a read-only file system"
    if flags & os.ST_NOEXEC:
        return "it is on a file system mounted noexec, from which no library can be loaded"
    if not os.access(directory, os.W_OK | os.X_OK):
        return "this user cannot write to it"
    return None


def _library(source_name):
    """Path of a library of ``kernels/<source_name>`` that has loaded here: the one the package
    carries, else one in the cache, built if need be (into a private directory where the cache
    cannot hold one); None (and the reason in ``_unavailable``) where there is none."""
    name = library_name(source_name, host_architecture(), SOURCE_DIR)
    shipped = os.path.join(SOURCE_DIR, name)
    stale = None
    if os.path.exists(shipped):
        failure = _load_failure(shipped, source_name)
        if failure is None:
            return shipped
        stale = f"the library the package ships does not load: {failure}"
    cache = _trusted_cache()
    library = os.path.join(cache, name)
    if os.path.lexists(library):
        failure = _distrust(library) or _load_failure(library, source_name)
        if failure is None:
            return library
        stale = f"the cached one does not load: {failure}"
    unusable = None if cache == _private_dir else _cannot_hold_libraries(cache)
    if unusable is not None:
        _warn_once(cache, f"ms_lars: the kernel cache {cache} cannot serve: {unusable}. {_PRIVATE_INSTEAD}")
    if unusable is not None or os.path.realpath(library) in _loaded:   # (loaded, but is not this kernel)
        library = os.path.join(_private_cache(), name)
    reason = _rebuild(source_name, library, stale)
    if reason is not None:
        _unavailable[source_name] = reason
        warnings.warn(f"ms_lars: {reason}; using the slower composed-op CPU path", RuntimeWarning)
        return None
    return library


def _rebuild(source_name, library, stale):
    """Compile ``source_name`` to a temporary name beside ``library``, load it, and rename it to
    ``library``; returns None, or why no library could be made."""
    compiler = find_compiler()
    if compiler is None:
        return "no compiled CPU kernels in this installation and no C++ compiler found (set CXX or install g++)"
    why = f" ({stale})" if stale else ""
    logger.info("building the fused CPU kernel %s into %s (once)%s", source_name, library, why)
    partial = None
    try:
        target = compiler_target(compiler)
        if target != host_architecture():
            return f"{compiler} builds for {target}, not for this machine ({host_architecture()}): set CXX"
        os.makedirs(os.path.dirname(library), mode=0o700, exist_ok=True)
        fd, partial = tempfile.mkstemp(suffix=".so.partial", dir=os.path.dirname(library))
        os.close(fd)
        result = compile_kernel(compiler, os.path.join(SOURCE_DIR, source_name), partial)
        if result.returncode != 0:
            return build_failure(compiler, source_name, result.stderr)
        failure = _load_failure(partial, source_name)
        if failure is not None:
            return f"the library {compiler} built does not load: {failure}"
        os.replace(partial, library)   # atomic: a concurrent build (msrun workers) never sees half a file
        partial = None
        return None
    except OSError as error:   # an unwritable cache, a compiler that cannot run
        return f"building {source_name} failed ({error})"
    finally:
        if partial is not None and os.path.exists(partial):
            os.unlink(partial)   # never leave a half-built or empty library behind


def kernels_switched_off(environ=os.environ):
    """The users' switch: ``MS_LARS_NO_CPU_KERNELS=1`` in ``environ`` sends LARS and Lamb constructed
    from then on to their composed-op route. Read here and nowhere else; ms_lars never sets it (a
    test or script that wants a route passes ``route=``)."""
    return environ.get("MS_LARS_NO_CPU_KERNELS") == "1"


def unavailable_reason(source_name):
    """Why ``kernels/<source_name>`` has no library here, once a kernel was asked for; None where it has one."""
    if kernels_switched_off():
        return "MS_LARS_NO_CPU_KERNELS=1 is set"
    return _unavailable.get(source_name)


def library_loads(source_name):
    """Whether ``kernels/<source_name>`` has a library that loads here (shipped, cached, or built now)."""
    if source_name not in _built:
        _built[source_name] = _library(source_name)
    return _built[source_name] is not None


def cpu_kernel(source_name, function, outputs=(1,), in_place=False):
    """A MindSpore AOT custom op for ``function`` in ``kernels/<source_name>``, or None where the
    device target is not the CPU or the kernel cannot be built. (Whether a route uses it is the
    route chooser's business, ``_routes.resolve``: the users' switch included.)

    ``outputs``: one entry per float32 output, an int (the shape of that input) or a tuple (a fixed
    shape); by default one output shaped like the second input. ``in_place``: the kernel writes its
    Parameter inputs, declared as a memory side effect so reads stay ordered.
    """
    if get_context("device_target") != "CPU" or not library_loads(source_name):
        return None
    library = _built[source_name]
    outputs = tuple(outputs)
    key = (library, function, outputs)
    if key not in _ops:
        def shape(*input_shapes):
            shapes = [list(input_shapes[spec]) if isinstance(spec, int) else list(spec) for spec in outputs]
            return shapes[0] if len(shapes) == 1 else shapes

        def dtype(*input_dtypes):
            return mstype.float32 if len(outputs) == 1 else [mstype.float32] * len(outputs)

        op = ops.Custom(f"{library}:{function}", out_shape=shape, out_dtype=dtype, func_type="aot")
        if in_place:
            op.add_prim_attr("side_effect_mem", True)
        _ops[key] = op
    return _ops[key]


_to_float32 = C.MultitypeFuncGraph("to_float32")
_stack = P.Stack()


@_to_float32.register("Number")
def _number_to_float32(value):
    return F.scalar_to_tensor(value, mstype.float32)


@_to_float32.register("Tensor")
def _tensor_to_float32(value):
    return F.cast(F.reshape(value, ()), mstype.float32)


def per_parameter_values(values):
    """A learning rate or weight decay as the multi-parameter kernels take it: one float32 value
    (shape ()), or, given one per parameter (a tuple, as nn.Optimizer gives for groups), a float32
    vector of them."""
    if isinstance(values, tuple):
        return _stack(C.Map()(_to_float32, values))
    return _to_float32(values)
