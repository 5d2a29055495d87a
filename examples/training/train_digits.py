"""Train a small neural network on the 8x8 handwritten-digits data set.

Model: ``StandardScaler`` + ``MLPClassifier(hidden_layer_sizes=(64,))`` (one
hidden ReLU layer, Adam). The network is trained epoch by epoch with
``partial_fit`` on shuffled mini-batches (one optimiser step per mini-batch)
and evaluated with stratified k-fold cross-validation. Afterwards a model is
refit on all training rows (optionally a class-balanced random subsample,
``--sample N``) for the same number of epochs and written, together with the
mean cross-validated metrics (accuracy, macro_f1), to ``--output-dir``.

The data ships inside scikit-learn (``load_digits``, 1797 images, 10
classes); nothing is downloaded. Output: progress lines on stdout, a progress
bar on stderr and, as the last stdout line, a single JSON object with the
final metrics.

Every epoch is also printed as one JSON object, ``{"epoch": 3, "fold": 2,
"loss": 0.41, "val_...": ...}`` (``fold`` is null for the final fit), so a
metric curve can be drawn from the log. Ctrl+C (SIGINT) saves how far training
got to ``checkpoint.pkl`` in ``--output-dir`` and exits 130.
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import signal
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, f1_score, log_loss
from sklearn.model_selection import StratifiedKFold
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

MODEL_NAME = "digits"
BAR_WIDTH = 30


class Checkpoint:
    """How far training got; saved into the output dir when the run is interrupted (SIGINT)."""

    def __init__(self) -> None:
        self.dir: Path | None = None
        self.state: dict[str, object] = {}

    def update(self, **state: object) -> None:
        self.state.update(state)

    def save(self) -> Path | None:
        """Write checkpoint.pkl (temp file + rename: never half a file); None if nothing to save."""
        if self.dir is None or "model" not in self.state:
            return None
        path = self.dir / "checkpoint.pkl"
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            pickle.dump(self.state, fh)
        tmp.replace(path)
        return path


CHECKPOINT = Checkpoint()
INTERRUPTED: list[int] = []  # the signal, once Ctrl+C has been pressed


def interrupt(signum: int, _frame: object) -> None:
    """Ctrl+C: stop now. Python only prints a KeyboardInterrupt that lands inside a finaliser
    ("Exception ignored in ..."), so the flag also stops the run at the end of the epoch."""
    INTERRUPTED.append(signum)
    raise KeyboardInterrupt


def stop_if_interrupted() -> None:
    if INTERRUPTED:
        raise KeyboardInterrupt


def emit(record: dict[str, object]) -> None:
    """One JSON object per line on stdout (per-epoch metrics, then the final metrics)."""
    print(json.dumps(record, allow_nan=False), flush=True)


class ProgressBar:
    """A single-line progress bar drawn on stderr with carriage returns."""

    def __init__(self, total: int) -> None:
        self.total = max(total, 1)
        self.done = 0
        self._last_len = 0

    def update(self, label: str, step: int = 1) -> None:
        self.done = min(self.done + step, self.total)
        frac = self.done / self.total
        filled = round(frac * BAR_WIDTH)
        text = f"[{'#' * filled}{' ' * (BAR_WIDTH - filled)}] {frac * 100:3.0f}% {label}"
        pad = " " * max(self._last_len - len(text), 0)
        self._last_len = len(text)
        sys.stderr.write(f"\r{text}{pad}")
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\n")
        sys.stderr.flush()


def log(message: str) -> None:
    """Print one progress line to stdout and flush it immediately."""
    print(message, flush=True)


def finite(value: float) -> float | None:
    """Round to 4 decimals; map NaN/inf to None so the JSON stays valid."""
    value = float(value)
    return round(value, 4) if math.isfinite(value) else None


def finite_mean(values: list[float]) -> float | None:
    """Mean of the finite values (None if there are none), rounded."""
    kept = [v for v in values if math.isfinite(v)]
    return finite(float(np.mean(kept))) if kept else None


def balanced_subsample(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Pick ``n`` row indices, dealing classes round-robin from per-class
    shuffled lists, so each class gets ``n // n_classes`` or one more row."""
    rng = np.random.default_rng(seed)
    per_class = [list(rng.permutation(np.flatnonzero(y == c))) for c in np.unique(y)]
    picked: list[int] = []
    while len(picked) < n:
        for rows in per_class:
            if rows and len(picked) < n:
                picked.append(int(rows.pop()))
    return np.sort(np.asarray(picked))


def parse_args(argv: list[str] | None, n_total: int, n_classes: int, min_class: int) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="training epochs per fold (default: 10)")
    parser.add_argument("--folds", type=int, default=5, help="stratified CV folds, >= 2 (default: 5)")
    parser.add_argument("--batch-size", type=int, default=32, help="mini-batch size (default: 32)")
    parser.add_argument(
        "--sample",
        type=int,
        default=None,
        metavar="N",
        help=f"train on a class-balanced random subsample of N of the {n_total} images (default: all)",
    )
    parser.add_argument(
        "--output-dir",
        default="results/digits",
        help="where model.pkl and metrics.json are written (default: results/digits)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    args = parser.parse_args(argv)

    if args.epochs < 1:
        parser.error(f"--epochs must be >= 1 (got {args.epochs})")
    if args.folds < 2:
        parser.error(f"--folds must be >= 2 for k-fold cross-validation (got {args.folds})")
    if args.folds > min_class:
        parser.error(f"--folds must be <= {min_class}, the size of the smallest class (got {args.folds})")
    # Stratified k-fold needs every class to appear at least `folds` times.
    min_sample = n_classes * args.folds
    if args.sample is not None and not min_sample <= args.sample <= n_total:
        parser.error(
            f"--sample must be between {min_sample} ({n_classes} classes x folds) and {n_total} (got {args.sample})"
        )
    n_used = n_total if args.sample is None else args.sample
    if not 1 <= args.batch_size <= n_used:
        parser.error(f"--batch-size must be between 1 and {n_used} (got {args.batch_size})")
    if not 0 <= args.seed < 2**32:
        parser.error(f"--seed must be between 0 and {2**32 - 1} (got {args.seed})")
    out = Path(args.output_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        parser.error(f"cannot create --output-dir {out}: {exc.strerror or exc}")
    return args


def train_epochs(
    X: np.ndarray,
    y: np.ndarray,
    classes: np.ndarray,
    epochs: int,
    batch_size: int,
    seed: int,
    on_epoch: Callable[[int, Pipeline], None],
) -> Pipeline:
    """Fit a scaler on X, then train the network for ``epochs`` passes of
    shuffled mini-batches. ``on_epoch(epoch, pipeline)`` is called after each."""
    scaler = StandardScaler().fit(X)
    Xs = scaler.transform(X)
    mlp = MLPClassifier(
        hidden_layer_sizes=(64,),
        activation="relu",
        solver="adam",
        alpha=1e-4,
        learning_rate_init=3e-3,
        random_state=seed,
    )
    pipe = Pipeline([("scaler", scaler), ("mlp", mlp)])
    rng = np.random.default_rng(seed)
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(Xs))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            # batch_size == len(batch): exactly one Adam step per mini-batch
            # (and no "batch_size clipped" warning on the last, short batch).
            mlp.set_params(batch_size=len(idx))
            mlp.partial_fit(Xs[idx], y[idx], classes=classes)
        CHECKPOINT.update(model=pipe, epoch=epoch)
        on_epoch(epoch, pipe)
        stop_if_interrupted()
    mlp.set_params(batch_size=batch_size)  # record the nominal mini-batch size
    return pipe


def make_reporter(
    label: str,
    fold: int | None,
    epochs: int,
    bar: ProgressBar,
    classes: np.ndarray,
    X_tr: np.ndarray,
    y_tr: np.ndarray,
    X_va: np.ndarray | None = None,
    y_va: np.ndarray | None = None,
) -> Callable[[int, Pipeline], None]:
    """Build the per-epoch callback: log training loss (and validation
    accuracy when a validation split is given) as a line and as a JSON object
    (``fold`` is null for the final fit on all rows), and advance the progress bar."""

    def report(epoch: int, pipe: Pipeline) -> None:
        loss = log_loss(y_tr, pipe.predict_proba(X_tr), labels=classes)
        line = f"{label} epoch {epoch}/{epochs} loss={loss:.4f}"
        record: dict[str, object] = {"epoch": epoch, "fold": fold, "loss": finite(loss)}
        if X_va is not None and y_va is not None:
            val_acc = accuracy_score(y_va, pipe.predict(X_va))
            line += f" val_acc={val_acc:.4f}"
            record["val_accuracy"] = finite(val_acc)
        emit(record)  # before the line: a live display shows the human one as the job's last
        log(line)
        bar.update(f"{label} epoch {epoch}/{epochs}")

    return report


def main(argv: list[str] | None = None) -> None:
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    X_all, y_all = load_digits(return_X_y=True)
    classes = np.unique(y_all)
    args = parse_args(argv, len(y_all), len(classes), int(np.bincount(y_all).min()))
    out = Path(args.output_dir)
    CHECKPOINT.dir = out
    t0 = time.perf_counter()

    if args.sample is not None and args.sample < len(y_all):
        rows = balanced_subsample(y_all, args.sample, args.seed)
        X, y = X_all[rows], y_all[rows]
    else:
        X, y = X_all, y_all

    bar = ProgressBar(total=(args.folds + 1) * args.epochs)
    skf = StratifiedKFold(n_splits=args.folds, shuffle=True, random_state=args.seed)
    scores: dict[str, list[float]] = {"accuracy": [], "macro_f1": []}

    log(f"dataset: digits n_samples={len(y)} of {len(y_all)} n_features={X.shape[1]} n_classes={len(classes)}")
    for fold, (tr, va) in enumerate(skf.split(X, y), start=1):
        X_tr, y_tr, X_va, y_va = X[tr], y[tr], X[va], y[va]

        label = f"fold {fold}/{args.folds}"
        CHECKPOINT.update(fold=fold, scores=scores)
        report = make_reporter(label, fold, args.epochs, bar, classes, X_tr, y_tr, X_va, y_va)
        pipe = train_epochs(X_tr, y_tr, classes, args.epochs, args.batch_size, args.seed + fold, report)
        pred = pipe.predict(X_va)
        scores["accuracy"].append(accuracy_score(y_va, pred))
        scores["macro_f1"].append(f1_score(y_va, pred, average="macro", labels=classes, zero_division=0.0))
        log(
            f"fold {fold}/{args.folds} done accuracy={scores['accuracy'][-1]:.4f} macro_f1={scores['macro_f1'][-1]:.4f}"
        )

    CHECKPOINT.update(fold=None, scores=scores)
    report_final = make_reporter("final fit", None, args.epochs, bar, classes, X, y)
    model = train_epochs(X, y, classes, args.epochs, args.batch_size, args.seed, report_final)
    bar.close()

    with open(out / "model.pkl", "wb") as fh:
        pickle.dump(model, fh)

    metrics: dict[str, object] = {"model": MODEL_NAME}
    for name, values in scores.items():
        metrics[name] = finite_mean(values)
    metrics.update({"epochs": args.epochs, "folds": args.folds, "n_samples": len(y)})
    file_metrics = dict(metrics, duration_s=round(time.perf_counter() - t0, 3))
    (out / "metrics.json").write_text(json.dumps(file_metrics, indent=2, allow_nan=False) + "\n")
    log(f"wrote {out / 'model.pkl'} and {out / 'metrics.json'}")
    emit(metrics)


def run() -> None:
    """main(), except that Ctrl+C (SIGINT) saves a checkpoint and exits 130, without a traceback."""
    signal.signal(signal.SIGINT, interrupt)
    try:
        main()
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl+C must not cut the save short
        sys.stderr.write("\n")
        path = CHECKPOINT.save()
        print(
            f"interrupted: {f'saved a checkpoint to {path}' if path else 'nothing to save yet'}",
            file=sys.stderr,
            flush=True,
        )
        sys.exit(130)


if __name__ == "__main__":
    run()
