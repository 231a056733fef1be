"""Run a script written for ``nn.LARS`` / ``nn.Lamb`` on ms_lars, without editing it.

    python -m ms_lars.patch SCRIPT [ARGS...]
    msrun --worker_num=2 --local_worker_num=2 --join=True python -m ms_lars.patch SCRIPT [ARGS...]

Calls ``ms_lars.patch_mindspore()``, then runs SCRIPT as ``python SCRIPT ARGS`` would: as
``__main__``, with ``sys.argv == [SCRIPT, *ARGS]``, SCRIPT's folder first on ``sys.path``, its exit
status, and, if it raises, a traceback that starts in SCRIPT.
"""
import os
import runpy
import sys
import traceback

import ms_lars

USAGE = "usage: python -m ms_lars.patch SCRIPT [ARGS...]"


def _traceback_from(script, tb):
    """The traceback's frames from the first one in ``script`` on (this module's and runpy's dropped)."""
    start = tb
    while start is not None and os.path.abspath(start.tb_frame.f_code.co_filename) != script:
        start = start.tb_next
    return start or tb


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, file=sys.stderr if not argv else sys.stdout)
        return 2 if not argv else 0
    script = os.path.abspath(argv[0])
    if not os.path.isfile(script):
        print(f"ms_lars.patch: can't open file {argv[0]!r}: no such file", file=sys.stderr)
        return 2
    ms_lars.patch_mindspore()
    sys.argv = list(argv)
    sys.path[0] = os.path.dirname(script)
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - reported as python SCRIPT would, then the same exit status
        traceback.print_exception(type(exc), exc, _traceback_from(script, exc.__traceback__))
        return 130 if isinstance(exc, KeyboardInterrupt) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
