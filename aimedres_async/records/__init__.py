"""Records: job output framed into JSON lines, the run's log files, the log schema, and the console
(human lines, JSON, or the live display).
"""
