"""An older copy, kept from before the move to src/."""

raise SystemExit("legacy copy: not the script to run")
