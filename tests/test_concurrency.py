"""Two queued experiments run at once (`dvc queue start -j 2`) against one SQLite MLflow store: nothing lost."""

import json
import time

import mlflow
import yaml
from conftest import REPO, TINY, make_project, merge, run

from invaders.config import Params

# The smallest pipeline that still trains past warmup and writes a checkpoint.
PARAMS = merge(TINY, {"baseline": {"episodes": 1}, "evaluate": {"episodes": 1, "video": False},
                      "train": {"steps": 200}})


def test_two_queued_experiments_record_everything_in_one_store(tmp_path):
    params = merge(yaml.safe_load((REPO / "params.yaml").read_text()), PARAMS)
    make_project(tmp_path, params, repro=False)
    for seed in (1, 2):
        run(["dvc", "exp", "run", "--queue", "-S", f"seed={seed}"], tmp_path)
    run(["dvc", "queue", "start", "-j", "2"], tmp_path)
    deadline = time.monotonic() + 900
    while "Queued" in (status := run(["dvc", "queue", "status"], tmp_path).stdout) or "Running" in status:
        assert time.monotonic() < deadline, status
        time.sleep(3)
    assert status.count("Success") == 2, status + run(["dvc", "queue", "logs", status.split()[5]], tmp_path,
                                                          check=False).stdout[-3000:]

    # Both experiments' runs are in the project's store, although each ran in its own temporary copy.
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["invaders"], output_format="list")
    assert sorted((r.data.tags["stage"], r.data.params["seed"]) for r in runs) == [
        ("baseline", "1"), ("baseline", "2"), ("train", "1"), ("train", "2")]
    assert all(r.info.status == "FINISHED" for r in runs)
    client = mlflow.MlflowClient()
    shown = json.loads(run(["dvc", "exp", "show", "--json"], tmp_path).stdout)
    evaluated = {}
    for exp in (exp for entry in shown for exp in (entry.get("experiments") or [])):
        data = exp["revs"][0]["data"]
        seed = data["params"]["params.yaml"]["data"]["seed"]
        evaluated[str(seed)] = data["metrics"]["data/eval/metrics.json"]["data"]["mean_reward"]
    for r in (r for r in runs if r.data.tags["stage"] == "train"):
        assert len(r.data.params) == len(Params().flat())
        assert len(client.get_metric_history(r.info.run_id, "steps_per_s")) == 2  # every log_every (100) steps
        assert r.data.metrics["mean_reward"] == evaluated[r.data.params["seed"]]
        assert r.info.artifact_uri.startswith((tmp_path / "mlruns").as_uri())  # not in a throw-away copy
        assert {a.path for a in client.list_artifacts(r.info.run_id)} >= {"history.csv", "evaluation"}
