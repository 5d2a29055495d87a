"""Executors other than local processes (the local one is runner.run_attempt)."""
