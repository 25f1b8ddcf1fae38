"""Two queued experiments run at once (`dvc queue start -j 2`) against one SQLite MLflow store: nothing lost."""

import json
import os
import subprocess
import sys
import time

import mlflow
import yaml
import pytest
from conftest import REPO, TINY, make_project, merge, run

from invaders.config import Params

pytestmark = pytest.mark.e2e

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
    # They ran at once: each train stage started before the other had logged its last training step.
    client = mlflow.MlflowClient()
    spans = sorted((r.info.start_time, max(m.timestamp for m in client.get_metric_history(r.info.run_id,
                                                                                          "steps_per_s")))
                   for r in runs if r.data.tags["stage"] == "train")
    assert spans[1][0] < spans[0][1], f"the two trainings did not overlap: {spans}"
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


# One promote as the stage runs it (connect, then registry.promote), held at a barrier so that all start together.
RACER = """
import sys, time
from pathlib import Path
from invaders.config import PromoteConfig
from invaders.tracking.registry import promote
from invaders.tracking.store import connect
import json

connect("invaders")
while not Path("go").exists():
    time.sleep(0.001)
decision = promote(PromoteConfig(model_name="racers", alpha=0.05, min_episodes=5), sys.argv[1], "eval.csv",
                   "baseline.csv")
print(json.dumps(decision))
"""


def test_promotes_racing_for_one_model_name_judge_one_at_a_time(tmp_path):
    """Three equally good agents promoted at once: the first to decide becomes champion, the others are judged
    against it (a tie: challenger). Without serialising, several see no champion and all take the alias, or
    creating the registered model twice fails."""
    import tf_keras

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("invaders")
    net = tf_keras.Sequential([tf_keras.layers.Input((2,)), tf_keras.layers.Dense(6)])
    run_ids = []
    for _ in range(3):
        with mlflow.start_run() as r:
            mlflow.tensorflow.log_model(net, name="model", pip_requirements=["tensorflow"])
        run_ids.append(r.info.run_id)
    (tmp_path / "eval.csv").write_text("episode,reward,length\n" + "".join(f"{i},{500 + 10 * i},100\n"
                                                                          for i in range(5)))
    (tmp_path / "baseline.csv").write_text("episode,reward,length\n" + "".join(f"{i},{100 + 10 * i},100\n"
                                                                              for i in range(5)))
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    racers = [subprocess.Popen([sys.executable, "-c", RACER, run_id], cwd=tmp_path, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE) for run_id in run_ids]
    time.sleep(15)  # all three connected and waiting (a loaded 2-core machine imports MLflow in ~5 s)
    (tmp_path / "go").touch()
    outputs = [racer.communicate(timeout=300) for racer in racers]
    assert all(racer.returncode == 0 for racer in racers), [err[-2000:] for _, err in outputs]
    decisions = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]

    assert sorted(d["version"] for d in decisions) == ["1", "2", "3"]
    champions = [d for d in decisions if d["alias"] == "champion"]
    assert len(champions) == 1, decisions
    assert all(d["previous_champion"] == champions[0]["version"] for d in decisions if d is not champions[0])
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias("racers", "champion").version) == champions[0]["version"]
