"""Diabetes classifier (a stand-in), found by discovery: it is not in train.py's built-in list."""

import argparse
import json
import os
import time

p = argparse.ArgumentParser()
p.add_argument("--output-dir", default="results/diabetes")
p.add_argument("--epochs", type=int, default=10)
a = p.parse_args()

os.makedirs(os.path.join(a.output_dir, "metrics"), exist_ok=True)
stamp = time.strftime("%Y%m%d_%H%M%S")
with open(os.path.join(a.output_dir, "metrics", f"diabetes_{stamp}.json"), "w") as f:
    json.dump({"params": {"depth": 4}, "auc": 0.88, "accuracy": 0.83}, f)
