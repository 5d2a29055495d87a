"""`python -m aimedres_async` and the `aimedres-async` command: the command line.

The signals are held before the first heavy import (a Ctrl+C cannot cut one in half); the command
line then takes them over (`system.startup_signals`).
"""

import sys


def console_script() -> None:
    """The `aimedres-async` command (and `python -m aimedres_async`)."""
    try:
        from aimedres_async.system import startup_signals

        startup_signals.hold()
    except KeyboardInterrupt:  # Ctrl+C before the hold: nothing has started, nothing to tell
        sys.exit(130)
    from aimedres_async.cli.app import main

    sys.exit(main())


if __name__ == "__main__":
    console_script()
