"""aimedres-async: a supervisor that trains a whole folder of ML training scripts, unattended.

Run `python -m aimedres_async --help`; docs/ has the whole story.
"""

import sys as _sys

# Run as the program (`python -m aimedres_async` or the `aimedres-async` command), this is the
# first code of ours the interpreter runs: SIGINT, SIGTERM and SIGHUP are recorded from here
# on, before any import (`_signal` is built in and already loaded), so none is lost or raised
# inside an import. system/startup_signals.py takes them over (`hold`). Imported as a library,
# nothing changes.
_held: list[int] = []


def _hold(signum: int, _frame: object) -> None:
    _held.append(signum)


def _is_program() -> bool:
    argv, orig = _sys.argv, getattr(_sys, "orig_argv", [])
    if argv[:1] == ["-m"]:  # runpy is importing the package of the module it was asked to run
        for i, arg in enumerate(orig):
            target = orig[i + 1] if arg == "-m" and i + 1 < len(orig) else arg[2:] if arg.startswith("-m") else None
            if target is not None:
                return target in (__name__, f"{__name__}.__main__")
        return False
    return bool(argv) and argv[0].rsplit("/", 1)[-1] == "aimedres-async"


if _is_program():
    import _signal  # type: ignore[import-not-found]  # `signal` would import enum first

    for _signum in (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP):
        _signal.signal(_signum, _hold)

__version__ = "0.1.0"
