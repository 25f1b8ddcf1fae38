"""A sweep's trial: one real pipeline run (baseline, start network, training, evaluation) through the
stage functions, tracked as an MLflow run nested under the sweep's parent run, in
`data/sweeps/<name>/trials/<id>/`. It reports the project's checkpoints to Ray, so a trial whose node
dies restarts on another node from its last checkpoint, in the same MLflow run, and ends with the
outputs it would have had without the failure. `ray_trial` is the Ray Tune trainable (Tune pickles it
by reference, so it stays a module-level function here).
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import shutil
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from invaders import files, reproducibility
from invaders.config import Params
from invaders.sweep.spec import Trial


def run_trial(config: dict, report=None, restored: Path | None = None) -> dict:
    """One trial, in its own process: baseline, start network, training, evaluation, tracked under the
    parent run. `report(metrics, checkpoint_path)` is told of every checkpoint; `restored`, a directory
    with a checkpoint from an earlier attempt, is resumed from. Returns the final metrics."""
    trial = Trial.model_validate(config["trial"])
    out = Path(config["out"]) / trial.id
    params = Params.model_validate(trial.params)
    # Before TensorFlow's first op: portable mode's instruction-set cap and thread counts, as in the
    # stages; in native mode the thread pools as large as the trial's CPUs (Ray does not limit them).
    reproducibility.apply(params)
    if params.reproducibility.mode == "native":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(config["cpus"])
        tf.config.threading.set_inter_op_parallelism_threads(config["cpus"])

    from invaders.rl import checkpoint
    from invaders.rl.episodes import read_rewards
    from invaders.stages.baseline import baseline
    from invaders.stages.build import build
    from invaders.stages.evaluate import evaluate
    from invaders.stages.train import train

    node = config.get("node", "local")
    attempts = out / "attempts.jsonl"  # where each attempt ran: a restarted trial has several lines
    out.mkdir(parents=True, exist_ok=True)
    with open(attempts, "a") as f:
        f.write(json.dumps({"node": node, "pid": os.getpid(), "restored": restored is not None}) + "\n")

    tags = {"mlflow.parentRunId": config["parent_run_id"], "sweep": config["sweep"], "sweep.trial": trial.id,
            "sweep.setting": trial.setting, "sweep.overrides": trial.label}
    baseline(params, out / "baseline", tags=tags, echo=_to_stderr)
    build(params, out / "model", echo=_to_stderr)

    checkpoints = out / "train" / "checkpoints"
    if checkpoints.exists():  # an earlier attempt's: Ray's checkpoint is the one to resume from
        checkpoint.clear(checkpoints)
    if restored:
        checkpoints.mkdir(parents=True, exist_ok=True)
        for found in restored.glob("step-*.ckpt"):
            shutil.copy(found, checkpoints / found.name)

    def saved(path: Path, metrics: dict) -> None:
        if report:
            report({**metrics, "node": node}, path)

    run_id = train(params, out / "model" / "model.keras", out / "train", tags=tags, on_checkpoint=saved,
                   echo=_to_stderr)
    # The evaluate stage plays on one thread, which TensorFlow fixes at its first op: this process has
    # trained, so the evaluation runs in a fresh one, and scores what the stage would.
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as fresh:
        evaluation = fresh.submit(evaluate, params, out / "train" / "model.keras", out / "train" / "mlflow_run.json",
                                  out / "baseline" / "metrics.json", out / "baseline" / "mlflow_run.json",
                                  out / "eval", echo=_to_stderr).result()
    trained = files.read_json(out / "train" / "metrics.json")
    validation = [float(v) for v in _column(out / "train" / "validation.csv", "mean_reward")]
    return {"step": params.train.steps, "val_mean_reward": validation[-1] if validation else math.nan,
            "eval_mean_reward": evaluation["mean_reward"],
            "val_best_mean_reward": max(validation) if validation else math.nan,
            "rewards": read_rewards(out / "eval" / "episodes.csv"),
            "selected_step": trained["selected_step"], "run_id": run_id, "node": node, "done": True}


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr)  # Ray keeps a trial's stdout for itself


def _column(path: Path, name: str) -> list[str]:
    import csv

    with open(path, newline="") as f:
        return [row[name] for row in csv.DictReader(f)]


def ray_trial(config: dict, login: dict | None = None) -> None:
    """`run_trial` as a Ray Tune function trainable; `login`, the tracking server's (from the object store),
    goes into this worker's environment, which the trial's processes inherit."""
    import ray
    from ray import tune

    os.environ.update(login or {})
    config = {**config, "node": ray.get_runtime_context().get_node_id()[:12]}

    def report(metrics: dict, path: Path) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copy(path, Path(tmp) / path.name)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))

    found = tune.get_checkpoint()
    if found is None:
        final = run_trial(config, report)
    else:
        with found.as_directory() as restored:
            final = run_trial(config, report, Path(restored))
    tune.report(final)
