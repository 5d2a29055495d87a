"""Train a linear regressor on the diabetes-progression data set.

Model: ``StandardScaler`` + ``SGDRegressor`` (squared-error linear regression
fitted by stochastic gradient descent). Each epoch is one ``partial_fit`` pass
over a freshly shuffled copy of the training fold; the model is evaluated with
shuffled k-fold cross-validation. Afterwards a model is refit on all training
rows (optionally a random subsample, ``--sample N``) for the same number of
epochs and written, together with the mean cross-validated metrics (r2, rmse,
mae), to ``--output-dir``.

The data ships inside scikit-learn (``load_diabetes``, 442 rows, 10 features);
nothing is downloaded. Output: progress lines on stdout, a progress bar on
stderr and, as the last stdout line, a single JSON object with the final
metrics.

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
from sklearn.datasets import load_diabetes
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import SGDRegressor
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from sklearn.model_selection import KFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

MODEL_NAME = "diabetes"
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


def parse_args(argv: list[str] | None, n_total: int) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="training epochs per fold (default: 10)")
    parser.add_argument("--folds", type=int, default=5, help="k-fold CV folds, >= 2 (default: 5)")
    parser.add_argument(
        "--sample",
        type=int,
        default=None,
        metavar="N",
        help=f"train on a random subsample of N of the {n_total} rows (default: all)",
    )
    parser.add_argument(
        "--output-dir",
        default="results/diabetes",
        help="where model.pkl and metrics.json are written (default: results/diabetes)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    args = parser.parse_args(argv)

    if args.epochs < 1:
        parser.error(f"--epochs must be >= 1 (got {args.epochs})")
    if args.folds < 2:
        parser.error(f"--folds must be >= 2 for k-fold cross-validation (got {args.folds})")
    # Every validation fold needs >= 2 rows, otherwise r2 is undefined.
    max_folds = n_total // 2
    if args.folds > max_folds:
        parser.error(f"--folds must be <= {max_folds} (got {args.folds})")
    if args.sample is not None and not 2 * args.folds <= args.sample <= n_total:
        parser.error(f"--sample must be between {2 * args.folds} (2 x folds) and {n_total} (got {args.sample})")
    if not 0 <= args.seed < 2**32:
        parser.error(f"--seed must be between 0 and {2**32 - 1} (got {args.seed})")
    out = Path(args.output_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        parser.error(f"cannot create --output-dir {out}: {exc.strerror or exc}")
    return args


Predictor = Callable[[np.ndarray], np.ndarray]


def train_epochs(
    X: np.ndarray,
    y: np.ndarray,
    epochs: int,
    seed: int,
    on_epoch: Callable[[int, Predictor], None],
) -> Pipeline:
    """Fit a scaler on X, then run ``epochs`` ``partial_fit`` passes over a
    freshly shuffled copy of the data. ``on_epoch(epoch, predict)`` is called
    after each pass with a function predicting in the original target units.

    SGD runs on a standardised target (the raw target is centred far from 0,
    which a learned intercept only reaches slowly); once training is done the
    coefficients are mapped back to target units, so the returned pipeline
    predicts the original target directly."""
    scaler = StandardScaler().fit(X)
    Xs = scaler.transform(X)
    y_mean = float(np.mean(y))
    y_std = float(np.std(y)) or 1.0
    ys = (y - y_mean) / y_std
    reg = SGDRegressor(
        loss="squared_error",
        penalty="l2",
        alpha=1e-4,
        learning_rate="invscaling",
        eta0=0.01,
        random_state=seed,
    )

    def predict(X_raw: np.ndarray) -> np.ndarray:
        return np.asarray(reg.predict(scaler.transform(X_raw)), dtype=float) * y_std + y_mean

    rng = np.random.default_rng(seed)
    for epoch in range(1, epochs + 1):
        order = rng.permutation(len(Xs))
        reg.partial_fit(Xs[order], ys[order])
        # the regressor is still on the standardised target here: keep what maps it back
        CHECKPOINT.update(model={"scaler": scaler, "regressor": reg, "y_mean": y_mean, "y_std": y_std}, epoch=epoch)
        on_epoch(epoch, predict)
        stop_if_interrupted()

    reg.coef_ = reg.coef_ * y_std
    reg.intercept_ = reg.intercept_ * y_std + y_mean
    return Pipeline([("scaler", scaler), ("reg", reg)])


def make_reporter(
    label: str,
    fold: int | None,
    epochs: int,
    bar: ProgressBar,
    X_tr: np.ndarray,
    y_tr: np.ndarray,
    X_va: np.ndarray | None = None,
    y_va: np.ndarray | None = None,
) -> Callable[[int, Predictor], None]:
    """Build the per-epoch callback: log training MSE (and validation r2/rmse
    when a validation split is given) as a line and as a JSON object (``fold``
    is null for the final fit on all rows), and advance the progress bar."""

    def report(epoch: int, predict: Predictor) -> None:
        loss = mean_squared_error(y_tr, predict(X_tr))
        line = f"{label} epoch {epoch}/{epochs} loss={loss:.4f}"
        record: dict[str, object] = {"epoch": epoch, "fold": fold, "loss": finite(loss)}
        if X_va is not None and y_va is not None:
            val_pred = predict(X_va)
            val_r2 = r2_score(y_va, val_pred)
            val_rmse = math.sqrt(mean_squared_error(y_va, val_pred))
            line += f" val_r2={val_r2:.4f} val_rmse={val_rmse:.4f}"
            record.update(val_r2=finite(val_r2), val_rmse=finite(val_rmse))
        emit(record)  # before the line: a live display shows the human one as the job's last
        log(line)
        bar.update(f"{label} epoch {epoch}/{epochs}")

    return report


def main(argv: list[str] | None = None) -> None:
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    X_all, y_all = load_diabetes(return_X_y=True)
    args = parse_args(argv, len(y_all))
    out = Path(args.output_dir)
    CHECKPOINT.dir = out
    t0 = time.perf_counter()

    if args.sample is not None and args.sample < len(y_all):
        rows = np.sort(np.random.default_rng(args.seed).choice(len(y_all), args.sample, replace=False))
        X, y = X_all[rows], y_all[rows]
    else:
        X, y = X_all, y_all

    bar = ProgressBar(total=(args.folds + 1) * args.epochs)
    kf = KFold(n_splits=args.folds, shuffle=True, random_state=args.seed)
    scores: dict[str, list[float]] = {"r2": [], "rmse": [], "mae": []}

    log(f"dataset: diabetes n_samples={len(y)} of {len(y_all)} n_features={X.shape[1]}")
    for fold, (tr, va) in enumerate(kf.split(X), start=1):
        X_tr, y_tr, X_va, y_va = X[tr], y[tr], X[va], y[va]

        label = f"fold {fold}/{args.folds}"
        CHECKPOINT.update(fold=fold, scores=scores)
        report = make_reporter(label, fold, args.epochs, bar, X_tr, y_tr, X_va, y_va)
        pipe = train_epochs(X_tr, y_tr, args.epochs, args.seed + fold, report)
        pred = pipe.predict(X_va)
        scores["r2"].append(r2_score(y_va, pred))
        scores["rmse"].append(math.sqrt(mean_squared_error(y_va, pred)))
        scores["mae"].append(mean_absolute_error(y_va, pred))
        log(
            f"fold {fold}/{args.folds} done r2={scores['r2'][-1]:.4f} "
            f"rmse={scores['rmse'][-1]:.4f} mae={scores['mae'][-1]:.4f}"
        )

    CHECKPOINT.update(fold=None, scores=scores)
    report_final = make_reporter("final fit", None, args.epochs, bar, X, y)
    model = train_epochs(X, y, args.epochs, args.seed, report_final)
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
