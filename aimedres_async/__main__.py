"""`python -m aimedres_async`: the command line."""

import sys

try:
    from .cli import main
except KeyboardInterrupt:  # Ctrl+C while the modules load: nothing has started, nothing to tell
    sys.exit(130)

sys.exit(main())
