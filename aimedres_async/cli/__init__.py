"""The command line: parse, build a request, hand it to the room below, print the answer.

One module per command family (run, queue operations, project commands) and the parser; no logic.
"""
