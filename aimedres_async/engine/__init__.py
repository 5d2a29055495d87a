"""The run engine: the sans-IO run state, the dispatcher that moves jobs through it, the recorder
that writes each move down, scheduling, retries, failure classes, and the executors that run attempts.
"""
