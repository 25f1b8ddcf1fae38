"""Same inputs, same outputs: a forced rerun and a killed-then-resumed training reproduce every output byte for byte."""

import csv
import hashlib
import io
import json
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
import yaml
from conftest import REPO, TINY, make_project, merge, ran_stages, run, tool_env

pytestmark = pytest.mark.e2e

# Long enough to kill part-way: checkpoints at steps 150, 300 and 450, validation every 100 steps. The
# defaults' n-step returns, prioritized replay and best-network selection are on.
PARAMS = merge(TINY, {"train": {"steps": 600, "checkpoint_every": 150}})
TRAIN_OUTPUTS = ["data/train/model.keras", "data/train/last.keras", "data/train/history.csv",
                 "data/train/validation.csv", "data/train/metrics.json"]
# Every output dvc.yaml declares is byte-identical but these, which name the MLflow runs and registered
# model versions each run creates anew.
NEW_EACH_RUN = {"data/baseline/mlflow_run.json", "data/train/mlflow_run.json", "data/promote/decision.json"}


def declared_outputs() -> list[str]:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"].values()
    declared = [next(iter(o)) if isinstance(o, dict) else o
                for stage in stages for o in stage.get("outs", []) + stage.get("metrics", [])]
    return sorted(set(declared) - NEW_EACH_RUN)


OUTPUTS = declared_outputs()


def wall_clock(name: str) -> bool:
    """Columns and keys that hold times or rates: the only things a rerun may change."""
    return any(word in name for word in ("time", "seconds", "per_s"))


def digest(path: Path) -> str:
    """SHA-256 of a file, leaving out wall-clock columns (CSV) and keys (JSON)."""
    data = path.read_bytes()
    if path.suffix == ".csv":
        rows = list(csv.reader(io.StringIO(data.decode())))
        keep = [i for i, name in enumerate(rows[0]) if not wall_clock(name)]
        data = "\n".join(",".join(row[i] for i in keep) for row in rows).encode()
    elif path.suffix == ".json":
        data = json.dumps({k: v for k, v in json.loads(data).items() if not wall_clock(k)}, sort_keys=True).encode()
    return hashlib.sha256(data).hexdigest()


def digests(root: Path, names: list[str]) -> dict[str, str]:
    """Digest of each output; a directory output (the video) by each of its files."""
    files = [p for name in names for p in ([root / name] if (root / name).is_file() else
                                            sorted((root / name).rglob("*")))]
    assert len(files) >= len(names)
    return {p.relative_to(root).as_posix(): digest(p) for p in files}


def built_project(tmp_path_factory, overrides: dict) -> tuple[Path, dict[str, str]]:
    """A tiny project on params.yaml with PARAMS and `overrides`, run once; its outputs' digests."""
    root = tmp_path_factory.mktemp("repro")
    make_project(root, merge(merge(yaml.safe_load((REPO / "params.yaml").read_text()), PARAMS), overrides))
    return root, digests(root, OUTPUTS)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """The defaults. test_reproducibility_quantile.py runs these tests again with the quantile head and shifts."""
    return built_project(tmp_path_factory, {})


def train_runs(root: Path) -> list:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    return mlflow.search_runs(experiment_names=["invaders"], filter_string="tags.stage = 'train'",
                              output_format="list", order_by=["attributes.start_time ASC"])


def test_forced_rerun_is_byte_identical(project):
    root, first = project
    assert {"data/model/model.keras", "data/train/model.keras", "data/eval/video/episode.mp4"} <= set(first)
    assert ran_stages(run(["dvc", "repro", "-f"], root).stdout) == ["baseline", "build", "train", "evaluate", "promote"]
    assert digests(root, OUTPUTS) == first
    # The run's record of its outputs: one listing in `sha256sum` format for the train and evaluate stages'
    # outputs (the model files themselves, history.csv with its wall-clock column), its digest as one tag.
    import mlflow

    latest = train_runs(root)[-1]
    listing = Path(mlflow.artifacts.download_artifacts(run_id=latest.info.run_id, artifact_path="outputs.sha256",
                                                       dst_path=str(root / "check"))).read_text()
    recorded = dict(reversed(line.split("  ", 1)) for line in listing.splitlines())
    assert set(recorded) == {"data/model/model.keras", *TRAIN_OUTPUTS, "data/eval/episodes.csv",
                             "data/eval/metrics.json", "data/eval/video/episode.mp4"}
    for name, digest in recorded.items():
        assert digest == hashlib.sha256((root / name).read_bytes()).hexdigest(), name
    assert latest.data.tags["outputs.sha256"] == hashlib.sha256(listing.encode()).hexdigest()
    assert not any(key.startswith("sha256.") for key in latest.data.tags)
    assert latest.data.params["seed"] == "0"
    head = yaml.safe_load((root / "params.yaml").read_text())["agent"]["head"]
    assert latest.info.run_name == {"scalar": "dqn-nature", "quantile": "qr-dqn-nature"}[head]
    assert latest.data.params["agent.head"] == head


def test_killed_training_resumes_to_the_same_outputs(project):
    root, first = project
    checkpoints = root / "data" / "train" / "checkpoints"
    dvc = subprocess.Popen(["dvc", "repro", "-f", "-s", "train"], cwd=root, env=tool_env(), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 600
    while len(list(checkpoints.glob("step-*.ckpt"))) < 2:  # two, so one can be corrupted
        assert dvc.poll() is None, f"training ended before it could be killed:\n{dvc.stdout.read()[-3000:]}"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # The interpreter itself, not the shell DVC may start it under (dash, /bin/sh on CI, forks instead of
    # exec'ing, and killing the shell would orphan a trainer that goes on writing checkpoints).
    trainer = next(p for p in psutil.Process(dvc.pid).children(recursive=True)
                   if p.name().startswith("python") and "pipeline/train.py" in p.cmdline())
    trainer.send_signal(signal.SIGKILL)
    assert dvc.wait(timeout=120) != 0
    killed_run = train_runs(root)[-1]
    assert killed_run.info.status == "RUNNING"  # nobody closed it

    *_, fallback, newest = sorted(checkpoints.glob("step-*.ckpt"))
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # as a crash mid-write would
    resumed = run(["dvc", "repro", "-f", "-s", "train"], root)
    assert "unusable checkpoint (truncated: no trailer)" in resumed.stderr
    assert "resuming from the checkpoint at step" in resumed.stdout
    assert digests(root, TRAIN_OUTPUTS) == {k: first[k] for k in TRAIN_OUTPUTS}
    assert not list(checkpoints.glob("*"))  # superseded by the outputs

    runs = train_runs(root)
    assert runs[-1].info.run_id == killed_run.info.run_id and runs[-1].info.status == "FINISHED"
    assert json.loads((root / "data/train/mlflow_run.json").read_text())["run_id"] == killed_run.info.run_id
    # From the one good checkpoint before the corrupted one, in the same run (so not tagged as a new one).
    assert runs[-1].data.tags["resumed_from_step"] == str(int(fallback.stem.split("-")[1]))
    assert "resumed_from_run" not in runs[-1].data.tags
    # Its metric histories are an uninterrupted run's: the points logged again after the kill are not doubled.
    import mlflow

    client = mlflow.MlflowClient()
    for key in ("episode_reward", "episode_reward_mean100", "episode_length", "epsilon", "train_loss", "val_mean_reward"):
        histories = [sorted((m.step, m.value) for m in client.get_metric_history(r.info.run_id, key))
                     for r in (runs[0], runs[-1])]
        assert histories[0] == histories[1] and histories[0], key

