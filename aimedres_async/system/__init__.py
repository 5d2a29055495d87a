"""What the operating system does for us: processes, /proc, the child watcher, the death watch,
signals, atomic writes, provenance. Knows nothing of the rooms above it.
"""
