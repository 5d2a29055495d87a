"""`python -m aimedres_async`: the command line."""

import sys

try:
    from . import startup_signals

    startup_signals.hold()  # before the first heavy import: a Ctrl+C cannot cut one in half
except KeyboardInterrupt:  # Ctrl+C before the hold: nothing has started, nothing to tell
    sys.exit(130)

from .cli import main

sys.exit(main())
