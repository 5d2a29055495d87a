"""`python -m aimedres_async`: the command line."""

import sys

from . import startup_signals

startup_signals.hold()  # before the first heavy import: a Ctrl+C cannot cut one in half

from .cli import main  # noqa: E402

sys.exit(main())
