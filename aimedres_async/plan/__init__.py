"""What to run: the config file and its checks, jobs and their commands, discovery of training
scripts, conversion of the old orchestrator's job list, metrics files, the starter config.
"""
