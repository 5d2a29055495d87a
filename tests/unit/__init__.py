"""The in-process test tier: fast tests that start no process (tests/unit/conftest.py enforces it).

A package, so that its test modules may share a name with a real-process test in tests/."""
