"""A small real project for the report tests: training scripts that print one JSON object per epoch
and fold, a flaky one (fails its first attempt), a broken one, and one that holds memory a while."""

from __future__ import annotations

import sys
from pathlib import Path

TRAIN = r"""
import json, math, os, random, sys, time
name, folds, epochs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
mode = sys.argv[4] if len(sys.argv) > 4 else ""
attempt = int(os.environ.get("AIMEDRES_ATTEMPT", "1"))
rnd = random.Random(name)
skill = {"cnn": 0.92, "mlp": 0.86, "flaky": 0.8, "hungry": 0.9}.get(name, 0.75)
hold = bytearray(48 << 20) if mode == "hungry" else b""  # touched below: resident memory
for i in range(0, len(hold), 4096):
    hold[i] = 1
print(f"dataset ready: {name}", flush=True)
if mode == "flaky" and attempt == 1:
    print("loading shard 3 of 8", flush=True)
    print("Traceback (most recent call last):", file=sys.stderr)
    print("ConnectionResetError: [Errno 104] Connection reset by peer", file=sys.stderr)
    sys.exit(3)
if mode == "broken":
    print("Traceback (most recent call last):", file=sys.stderr)
    print('  File "train.py", line 42, in <module>', file=sys.stderr)
    print("ValueError: the label column 'target' is missing", file=sys.stderr)
    sys.exit(1)
accs = []
for fold in range(1, folds + 1):
    for epoch in range(1, epochs + 1):
        loss = 1.2 * math.exp(-epoch / (2.5 + fold * 0.3)) + 0.05 + rnd.random() * 0.03
        acc = skill - 0.45 * math.exp(-epoch / 3) + rnd.random() * 0.02
        print(json.dumps({"epoch": epoch, "fold": fold, "loss": round(loss, 4), "val_acc": round(acc, 4)}), flush=True)
        time.sleep(float(os.environ.get("EPOCH_SLEEP", "0.01")))
    accs.append(acc)
if mode == "hungry":
    time.sleep(float(os.environ.get("HUNGRY_SLEEP", "2.5")))
print(json.dumps({"model": name, "accuracy": round(sum(accs) / len(accs), 4), "loss": round(loss, 4),
                  "epochs": epochs, "folds": folds}), flush=True)
"""


def make_project(folder: Path, marker: str = "", epochs: int = 6, folds: int = 3, workers: int = 2) -> Path:
    """Write train.py and aimedres.toml with four jobs; returns the config path."""
    (folder / "train.py").write_text(TRAIN)
    py = sys.executable

    def job(name: str, mode: str = "", optional: bool = False) -> str:
        argv = [py, "train.py", name, str(folds), str(epochs)] + ([mode] if mode else [])
        quoted = ", ".join(f'"{a}"' for a in argv)
        return f"[jobs.{name}]\ncommand = [{quoted}]\n" + ("optional = true\n" if optional else "")

    config = f"""
[supervisor]
parallel = true
max_workers = {workers}
grace_period = "2s"

[discovery]
enabled = false

[defaults]
retries = 1
backoff = {{ initial = "0.6s", factor = 1.0, max = "1s", jitter = 0.0 }}
timeout = "2m"
env = {{ TEST_MARKER = "{marker}" }}

{job("cnn")}
{job("mlp")}
{job("flaky", "flaky")}
{job("hungry", "hungry")}
{job("broken", "broken", optional=True)}
"""
    path = folder / "aimedres.toml"
    path.write_text(config)
    return path
