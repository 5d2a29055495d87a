"""Reports of a run: summary.json, JUnit, the step summary, the HTML report and failure diagnosis,
written from the engine's state or read back from a run's files.
"""
