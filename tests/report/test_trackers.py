"""`export mlflow`, `export tensorboard` and `[export]` (SPEC §19), with the real packages: what was
written is read back through MLflow's own client (`search_runs`, `get_metric_history`) and
TensorBoard's own event reader (`EventAccumulator`).

One real run of the bundled examples (small epochs) beside a failing and a cancelled job is made
once for the module; while its cancelled job still runs, it is exported once (a partial export).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import read_jsonl, run_dir, start_cli, summary, wait_for, write_config
from helpers_cli import cli, usage_error
from helpers_daemon import Daemons, daemon_config, submit, wait_final
from helpers_schema import check_record

pytest.importorskip("sklearn", reason="the examples need scikit-learn (pip install -e '.[examples]')")
pytest.importorskip("mlflow", reason="needs mlflow-skinny (pip install -e '.[test]')")
pytest.importorskip("sqlalchemy", reason="MLflow's local store needs SQLAlchemy (pip install -e '.[test]')")
pytest.importorskip("tensorboardX", reason="needs tensorboardX (pip install -e '.[test]')")
pytest.importorskip("tensorboard", reason="needs tensorboard's event reader (pip install -e '.[test]')")

pytestmark = [
    # SQLAlchemy 2.1 deprecates a loader option MLflow's store still uses; the warning is theirs
    pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SADeprecationWarning"),
    # each export is a process that imports MLflow (seconds) and may create its database
    pytest.mark.slow,
    pytest.mark.timeout(600),
]

PY = sys.executable
ROOT = Path(__file__).resolve().parents[2]
ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_TRACKING_URI": ""}
EXAMPLES = ("breast_cancer", "diabetes", "digits")
BROKEN = "import json, sys\nfor e in (1, 2): print(json.dumps({'epoch': e, 'loss': 1.0 / e}))\nsys.exit(3)"
SLOW = "import json, time\nfor e in (1, 2, 3): print(json.dumps({'epoch': e, 'loss': 1.0 / e}), flush=True)\ntime.sleep(300)"


def _config(extra: str = "") -> str:
    return f"""
[supervisor]
parallel = true
max_workers = 5
grace_period = "2s"

[discovery]
roots = ["examples/training"]

[defaults]
retries = 0
timeout = "5m"
env = {{ PYTHONUNBUFFERED = "1", OMP_NUM_THREADS = "1" }}

[jobs.digits]
script = "examples/training/train_digits.py"
batch = 64

[jobs.broken]
command = [{json.dumps(PY)}, "-c", {json.dumps(BROKEN)}]
optional = true

[jobs.slow]
command = [{json.dumps(PY)}, "-c", {json.dumps(SLOW)}]
optional = true
{extra}"""


def _data_records(log: Path) -> int:
    if not log.exists():
        return 0
    return sum(1 for line in log.read_bytes().splitlines() if b',"data":{' in line)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The examples, `broken` (fails after two epochs) and `slow` (three epochs, then sleeps until
    SIGINT cancels it); exported to MLflow's default store while `slow` still ran."""
    folder = tmp_path_factory.mktemp("trackers") / "proj"
    folder.mkdir()
    shutil.copytree(ROOT / "examples", folder / "examples")
    write_config(folder, _config())
    proc = start_cli(folder, "run", "--epochs", "2", "--folds", "2", "--no-progress", env=ENV)
    try:

        def ready() -> bool:
            if not (folder / "logs" / "latest" / "summary.json").exists():
                return False
            jobs = {j["id"]: j["status"] for j in summary(folder)["jobs"]}
            done = all(jobs.get(j) in ("succeeded", "failed") for j in (*EXAMPLES, "broken"))
            return done and _data_records(run_dir(folder) / "jobs" / "slow.jsonl") == 3

        wait_for(ready, timeout=240, what="the examples to end and `slow` to print its epochs")
        partial = cli(folder, "export", "mlflow", env=ENV, timeout=240)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, (out, err)
    assert partial.returncode == 0, partial.stderr
    yield {"folder": folder, "run": run_dir(folder), "partial": partial.stdout, "summary": summary(folder)}


def _client(folder: Path) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")


def _runs(client: Any, experiment: str, run_id: str) -> dict[str, Any]:
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None
    runs = client.search_runs([exp.experiment_id], f"tags.`aimedres.run_id` = '{run_id}'", max_results=1000)
    by_job: dict[str, Any] = {}
    for r in runs:
        job = r.data.tags["aimedres.job_id"]
        assert job not in by_job, f"{job} exported twice"
        by_job[job] = r
    return by_job


def _started_ms(log: Path) -> int:
    rec = next(r for r in read_jsonl(log) if r["event"] == "job.started")
    return round(rec["t"] * 1000)


def test_mlflow_export_completes_the_partial_one_and_then_adds_nothing(project: dict[str, Any]) -> None:
    folder, run = project["folder"], project["run"]
    run_id = run.name
    # while `slow` ran: every job made, one of them left running for a later export to complete
    assert "(5 new, 0 completed, 0 already there); 1 still running" in project["partial"]
    client = _client(folder)
    assert _runs(client, "proj", run_id)["slow"].info.status == "RUNNING"

    r = cli(folder, "export", "mlflow", env=ENV, timeout=240)
    assert r.returncode == 0, r.stderr
    assert f"run {run_id}: 5 job(s) in MLflow experiment 'proj'" in r.stdout
    assert "(0 new, 1 completed, 4 already there)" in r.stdout
    runs = _runs(client, "proj", run_id)
    assert set(runs) == {*EXAMPLES, "broken", "slow"}
    statuses = {job: x.info.status for job, x in runs.items()}
    assert statuses == {"breast_cancer": "FINISHED", "diabetes": "FINISHED", "digits": "FINISHED",
                        "broken": "FAILED", "slow": "KILLED"}  # fmt: skip

    digits = runs["digits"]
    params = digits.data.params
    assert params["epochs"] == "2" and params["folds"] == "2" and params["batch"] == "64"
    assert params["script"] == "examples/training/train_digits.py" and params["interpreter"] == PY
    history = {k: client.get_metric_history(digits.info.run_id, k) for k in digits.data.metrics}
    lengths = {k: len(v) for k, v in history.items()}
    assert lengths == {"loss/fold_1": 2, "loss/fold_2": 2, "val_accuracy/fold_1": 2, "val_accuracy/fold_2": 2,
                       "loss/final_fit": 2, "accuracy": 1, "macro_f1": 1, "epochs": 1, "folds": 1, "n_samples": 1}  # fmt: skip
    assert [m.step for m in history["loss/fold_1"]] == [1, 2]
    entry = next(j for j in project["summary"]["jobs"] if j["id"] == "digits")
    assert digits.data.metrics["accuracy"] == entry["metrics"]["accuracy"]
    tags = digits.data.tags
    assert tags["aimedres.run_id"] == run_id and tags["aimedres.attempts"] == "1"
    assert tags["aimedres.outcome"] == "succeeded" and tags["aimedres.final.model"] == "digits"
    assert tags["aimedres.config_sha256"] == project["summary"]["config_sha256"]
    assert tags["mlflow.runName"] == "digits"
    log = run / "jobs" / "digits.jsonl"
    assert digits.info.start_time == _started_ms(log)
    finished = next(x for x in read_jsonl(log) if x["event"] == "job.finished")
    assert digits.info.end_time == round(finished["t"] * 1000)
    assert [a.path for a in client.list_artifacts(digits.info.run_id, "aimedres")] == ["aimedres/digits.jsonl"]

    broken = runs["broken"]
    assert broken.data.tags["aimedres.failure"] == "exit_code" and broken.data.tags["aimedres.exit_code"] == "3"
    assert len(client.get_metric_history(broken.info.run_id, "loss")) == 2
    slow = runs["slow"]
    assert slow.data.tags["aimedres.outcome"] == "cancelled"
    assert len(client.get_metric_history(slow.info.run_id, "loss")) == 3  # not twice: completed, not redone

    again = cli(folder, "export", "mlflow", env=ENV, timeout=240)
    assert again.returncode == 0 and "(0 new, 0 completed, 5 already there)" in again.stdout, again.stdout
    assert len(_runs(client, "proj", run_id)) == 5


def test_an_export_cut_short_is_completed_without_duplicates(
    project: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An MLflow run left as an export interrupted after its first batch leaves it. In MLflow's
    file store, which (unlike its SQL store) keeps a point logged twice twice."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    run_id = project["run"].name
    uri = (tmp_path / "mlruns").as_uri()
    client = MlflowClient(uri)
    exp = client.create_experiment("cut")
    made = client.create_run(exp, tags={"aimedres.run_id": run_id, "aimedres.job_id": "digits"}, run_name="digits")
    log = project["run"] / "jobs" / "digits.jsonl"
    first = next(x for x in read_jsonl(log) if x["event"] == "job.output" and "data" in x)
    point = Metric("loss/fold_1", first["data"]["loss"], round(first["t"] * 1000), 1)
    client.log_batch(made.info.run_id, params=[], metrics=[point])

    env = {**ENV, "MLFLOW_ALLOW_FILE_STORE": "true"}
    r = cli(project["folder"], "export", "mlflow", "--tracking-uri", uri, "--experiment", "cut", env=env, timeout=240)
    assert r.returncode == 0, r.stderr
    assert "(4 new, 1 completed, 0 already there)" in r.stdout
    runs = _runs(client, "cut", run_id)
    digits = runs["digits"]
    assert digits.info.run_id == made.info.run_id and digits.info.status == "FINISHED"
    history = client.get_metric_history(digits.info.run_id, "loss/fold_1")
    assert [m.step for m in history] == [1, 2]  # the first point once, the second added
    assert len(client.get_metric_history(digits.info.run_id, "accuracy")) == 1


def _accumulator(folder: Path) -> Any:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return acc


def test_tensorboard_export_is_read_by_tensorboards_reader(project: dict[str, Any], tmp_path: Path) -> None:
    run_id = project["run"].name
    r = cli(project["folder"], "export", "tensorboard", "--logdir", str(tmp_path / "tb"), env=ENV, timeout=240)
    assert r.returncode == 0, r.stderr
    assert f"run {run_id}: 5 job(s) written under" in r.stdout
    base = tmp_path / "tb" / run_id
    assert sorted(p.name for p in base.iterdir()) == sorted([*EXAMPLES, "broken", "slow"])
    digits = _accumulator(base / "digits")
    scalars = digits.Tags()["scalars"]
    assert {k: len(digits.Scalars(k)) for k in scalars} == {
        "loss/fold_1": 2, "loss/fold_2": 2, "val_accuracy/fold_1": 2, "val_accuracy/fold_2": 2,
        "loss/final_fit": 2, "accuracy": 1, "macro_f1": 1, "epochs": 1, "folds": 1, "n_samples": 1,
    }  # fmt: skip
    assert [e.step for e in digits.Scalars("loss/fold_2")] == [1, 2]
    entry = next(j for j in project["summary"]["jobs"] if j["id"] == "digits")
    assert digits.Scalars("accuracy")[0].value == pytest.approx(entry["metrics"]["accuracy"])
    assert digits.PluginTagToContent("hparams")  # the params, for the HPARAMS tab
    assert len(_accumulator(base / "slow").Scalars("loss")) == 3

    again = cli(project["folder"], "export", "tensorboard", "--logdir", str(tmp_path / "tb"), env=ENV, timeout=240)
    assert again.returncode == 0, again.stderr
    assert len(list((base / "digits").iterdir())) == 1  # the folder replaced, not a second event file
    assert len(_accumulator(base / "digits").Scalars("loss/final_fit")) == 2


@pytest.mark.parametrize(("tracker", "extra"), [("mlflow", "mlflow"), ("tensorboard", "tensorboard")])
def test_without_the_extra_one_line_says_what_to_install(project: dict[str, Any], tracker: str, extra: str) -> None:
    hidden = "tensorboardX" if tracker == "tensorboard" else "mlflow"
    args = ["export", tracker] + (["--logdir", "tb"] if tracker == "tensorboard" else [])
    code = (
        f"import sys; sys.modules[{hidden!r}] = None\nfrom aimedres_async.cli.app import main\nsys.exit(main({args!r}))"
    )
    r = subprocess.run([PY, "-c", code], cwd=project["folder"], capture_output=True, text=True, timeout=120)
    line = usage_error(r)
    assert f"pip install 'aimedres-async[{extra}]'" in line


def test_no_run_is_a_usage_error(tmp_path: Path) -> None:
    write_config(tmp_path, "[discovery]\nenabled = false\n")
    line = usage_error(cli(tmp_path, "export", "mlflow", env=ENV))
    assert "no run found" in line


TRAIN = (
    "import json\nfor e in (1, 2, 3): print(json.dumps({'epoch': e, 'loss': 1.0 / e}))\nprint(json.dumps({'acc': 0.9}))"
)


SWEPT = """import argparse, json
p = argparse.ArgumentParser()
p.add_argument("--lr", type=float)
p.add_argument("--seed", type=int)
a = p.parse_args()
for e in (1, 2, 3):
    print(json.dumps({"epoch": e, "loss": a.lr / e}))
print(json.dumps({"acc": 1 - a.lr}))
"""


def test_export_config_sends_every_run_when_it_ends(tmp_path: Path) -> None:
    """A sweep's jobs, with their parameters (the `params` of summary.json) as MLflow params."""
    (tmp_path / "train.py").write_text(SWEPT)
    extra = '[export]\nmlflow = true\nexperiment = "nightly"\ntensorboard = "tb"\n'
    job = '[jobs.train]\nscript = "train.py"\nmatrix = { lr = [0.1, 0.2] }\nseeds = [7]\n'
    write_config(tmp_path, f"[discovery]\nenabled = false\n{job}{extra}")
    r = cli(tmp_path, "run", "--no-progress", env=ENV, timeout=240)
    assert r.returncode == 0, r.stderr
    run_id = run_dir(tmp_path).name
    events = read_jsonl(run_dir(tmp_path) / "events.jsonl")
    kinds = [e["event"] for e in events]
    assert kinds[-3:] == ["run.finished", "run.exported", "run.exported"], kinds[-4:]
    for e in events[-2:]:
        check_record(e, "events.jsonl")
    mlflow_rec = next(e for e in events if e.get("tracker") == "mlflow")
    assert mlflow_rec["created"] == 2 and mlflow_rec["experiment"] == "nightly"
    assert mlflow_rec["destination"] == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    client = _client(tmp_path)
    runs = _runs(client, "nightly", run_id)
    assert set(runs) == {"train[lr=0.1,seed=7]", "train[lr=0.2,seed=7]"}
    swept = runs["train[lr=0.2,seed=7]"]
    assert swept.info.status == "FINISHED" and swept.data.tags["aimedres.job_base"] == "train"
    assert swept.data.params["lr"] == "0.2" and swept.data.params["seed"] == "7"
    assert [m.value for m in client.get_metric_history(swept.info.run_id, "loss")] == pytest.approx([0.2, 0.1, 0.2 / 3])
    assert client.get_metric_history(swept.info.run_id, "acc")[0].value == pytest.approx(0.8)
    assert (tmp_path / "mlruns").is_dir()  # artifacts beside the store, in the config's folder
    folders = sorted(p.name for p in (tmp_path / "tb" / run_id).iterdir())
    assert folders == ["train@lr=0.1,seed=7", "train@lr=0.2,seed=7"]  # as the jobs' logs are named
    assert len(_accumulator(tmp_path / "tb" / run_id / "train@lr=0.1,seed=7").Scalars("loss")) == 3


def test_a_failed_export_is_a_warning_and_the_run_still_succeeds(tmp_path: Path) -> None:
    extra = '[export]\nmlflow = true\ntracking_uri = "nosuchscheme://nowhere"\n'
    job = f'[jobs.train]\ncommand = [{json.dumps(PY)}, "-c", {json.dumps(TRAIN)}]\n'
    write_config(tmp_path, f"[discovery]\nenabled = false\n{job}{extra}")
    r = cli(tmp_path, "run", "--no-progress", env=ENV, timeout=240)
    assert r.returncode == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and warnings[0].startswith("warning: export to mlflow failed: MLflow: "), r.stderr
    assert "Traceback" not in r.stderr
    failed = [e for e in read_jsonl(run_dir(tmp_path) / "events.jsonl") if e["event"] == "export.failed"]
    assert len(failed) == 1 and failed[0]["destination"] == "nosuchscheme://nowhere" and failed[0]["error"]
    check_record(failed[0], "events.jsonl")
    assert summary(tmp_path)["exit_code"] == 0


def test_export_config_sends_every_daemon_ticket(tmp_path: Path, marker: str, daemons: Daemons) -> None:
    job = f'[jobs.train]\ncommand = [{json.dumps(PY)}, "-c", {json.dumps(TRAIN)}]\n'
    write_config(tmp_path, daemon_config(marker, job, extra="") + '[export]\nmlflow = true\ntensorboard = "tb"\n')
    d = daemons.start(tmp_path, env=ENV)
    ticket = submit(tmp_path, "--job", "train")
    wait_final(tmp_path / "spool", [ticket])
    events_path = tmp_path / "logs" / "latest-daemon" / "events.jsonl"

    def exported() -> list[dict[str, Any]]:
        return [e for e in read_jsonl(events_path) if e["event"] == "run.exported" and e.get("ticket") == ticket]

    recs = wait_for(lambda: len(exported()) == 2 and exported(), timeout=180, what="the ticket's exports")
    for e in recs:
        check_record(e, "events.jsonl")
    daemon_run = events_path.parent.resolve().name
    runs = _runs(_client(tmp_path), tmp_path.resolve().name, daemon_run)
    assert set(runs) == {ticket} and runs[ticket].info.status == "FINISHED"
    assert len(_accumulator(tmp_path / "tb" / daemon_run / ticket).Scalars("loss")) == 3
    assert d.stop() == 0
    assert "Traceback" not in d.stderr() and "warning: export" not in d.stderr()
