"""aimedres-async: a supervisor that trains a whole folder of ML training scripts, unattended.

Run `python -m aimedres_async --help`; docs/ has the whole story.
"""

__version__ = "0.1.0"
