"""Stage `promote`: register the trained agent; it becomes `champion` only if it is significantly better."""

from __future__ import annotations

from pathlib import Path

from invaders import files
from invaders.config import Params
from invaders.stages import Echo
from invaders.tracking import runnote
from invaders.tracking.registry import promote as register
from invaders.tracking.store import connect


def promote(params: Params, train_run: Path = Path("data/train/mlflow_run.json"),
            episodes: Path = Path("data/eval/episodes.csv"), baseline: Path = Path("data/baseline/episodes.csv"),
            out: Path = Path("data/promote"), echo: Echo = print) -> dict:
    """Register the trained agent; it becomes `champion` only if it is significantly better. No TensorFlow."""
    train_run_id = files.read_json(train_run)["run_id"]
    files.require(episodes)
    files.require(baseline)
    connect(params.mlflow.experiment)
    decision = register(params.promote, train_run_id, episodes, baseline)
    runnote.write(train_run_id)
    files.write_json(out / "decision.json", decision)
    echo(f"promote: {decision['model_name']} version {decision['version']} is {decision['alias']}"
         f" ({decision['reason']})")
    if decision["alias_refused"]:
        echo(f"promote: but the registry did not move the alias: {decision['alias_refused']}"
             " (an admin, or a user with MANAGE on the model, can: run the stage with their login)")
    return decision
