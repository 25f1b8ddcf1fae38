"""Sweeps: many tracked trainings (settings × seeds) on a Ray cluster, and an honest summary of them.

A sweep file names a base params file, a grid and/or random search space over dotted params keys,
the seeds every setting runs with, the resources of a trial and the metric. Every trial's params
are built and validated before Ray starts. The base params always run as the setting `base`,
so the summary can say whether the best setting beats them.

Each trial is a real pipeline run through the library code the stages use (`invaders.runs`): the
random baseline, the start network, training and evaluation, in `data/sweeps/<name>/trials/<id>/`,
tracked as an MLflow run nested under the sweep's parent run. It reports the project's checkpoints
to Ray, so a trial whose node dies restarts on another node from its last checkpoint, in the same
MLflow run, and ends with the outputs it would have had without the failure.
"""

from __future__ import annotations

import itertools
import json
import math
import multiprocessing
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from ray import tune

from invaders import files, reproducibility
from invaders.config import Params, ParamsError, Strict, describe, load_params, parse_params
from invaders.errors import UserError
from invaders.sweep.summary import BASE  # the setting with no overrides: the base params file as it is

SWEEPS = Path("data/sweeps")


class SweepError(UserError):
    pass


class SweepInterrupted(UserError):
    """Stopped (Ctrl-C) with its state saved: not bad input, and not a summary either."""

    exit_code = 130


class Distribution(Strict):
    """One random dimension: exactly one of these."""

    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None
    randint: tuple[int, int] | None = Field(None, description="integers low..high, both included")
    choice: list[bool | int | float | str] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one(self) -> Distribution:
        given = [name for name in type(self).model_fields if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of uniform, loguniform, randint, choice")
        low_high = self.uniform or self.loguniform or self.randint
        if low_high and not low_high[0] < low_high[1]:
            raise ValueError(f"low must be less than high (got {list(low_high)})")
        if self.loguniform and self.loguniform[0] <= 0:
            raise ValueError("loguniform needs a positive low")
        return self

    def draw(self, rng):
        if self.uniform:
            return float(rng.uniform(*self.uniform))
        if self.loguniform:
            low, high = self.loguniform
            return float(math.exp(rng.uniform(math.log(low), math.log(high))))
        if self.randint:
            return int(rng.integers(self.randint[0], self.randint[1] + 1))
        return self.choice[int(rng.integers(len(self.choice)))]


class RandomSearch(Strict):
    samples: int = Field(ge=1, le=1000, description="random settings drawn (each crossed with the grid)")
    seed: int = Field(0, ge=0, description="seed of the draws: the same file draws the same settings")
    space: dict[str, Distribution] = Field(min_length=1)


class Resources(Strict):
    cpus: int = Field(1, ge=1, le=256, description="CPUs per trial (TensorFlow's threads in native mode)")
    memory_gb: float | None = Field(None, gt=0, description="memory per trial that Ray reserves (GB)")


class Asha(Strict):
    grace_steps: int = Field(ge=1, description="training steps before a trial can be stopped")
    reduction_factor: int = Field(2, ge=2, le=16)


class Sweep(Strict):
    name: str = Field(description="data/sweeps/<name>/ holds its trials and summary")
    params: Path = Field(Path("params.yaml"), description="the base params file")
    seeds: list[int] = Field(min_length=1, description="every setting runs with every seed")
    grid: dict[str, list[bool | int | float | str]] = Field(default_factory=dict)
    random: RandomSearch | None = None
    resources: Resources = Resources()
    metric: Literal["eval_mean_reward", "val_best_mean_reward"] = Field(
        "eval_mean_reward", description="a trial's score: the evaluate stage's mean, or the best validation mean")
    asha: Asha | None = Field(None, description="stop trials early on their validation score")
    max_failures: int = Field(3, ge=0, le=100, description="restarts of a trial whose node or process died")
    storage: str | None = Field(None, description="Ray's storage_path (default data/sweeps/<name>/ray)")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", value):
            raise ValueError("must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit")
        return value

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value) or any(not 0 <= s <= 2**31 - 1 for s in value):
            raise ValueError(f"must be distinct integers from 0 to 2147483647 (got {value})")
        return value

    @field_validator("grid")
    @classmethod
    def _grid(cls, value: dict) -> dict:
        for key, values in value.items():
            if not values:
                raise ValueError(f"{key}: needs at least one value")
        return value


def _sweep_error(path: Path, exc: ValidationError) -> str:
    error = exc.errors()[0]
    if error["type"] == "missing":
        return f"{path}: {'.'.join(map(str, error['loc']))}: missing (a sweep needs name and seeds)"
    return f"{path}: {describe(error)}"


def _set(raw: dict, dotted: str, value) -> None:
    *sections, leaf = dotted.split(".")
    for section in sections:
        raw = raw.setdefault(section, {})
    raw[leaf] = value


def _value(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


class Trial(BaseModel):
    """One run of the sweep: a setting (overrides of the base params) with one seed."""

    id: str
    setting: str
    overrides: dict
    seed: int
    params: dict  # the complete, validated params as a mapping

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={_value(v)}" for k, v in self.overrides.items()) or "base params"


def load(path: Path) -> tuple[Sweep, list[Trial]]:
    """The sweep file and every trial's params, all validated; SweepError naming the key otherwise."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise SweepError(f"{path}: no such sweep file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise SweepError(f"{path}:{f' line {mark.line + 1}' if mark else ''} not valid YAML") from None
    if not isinstance(raw, dict):
        raise SweepError(f"{path}: expected a mapping (name, params, seeds, grid, random, ...)")
    try:
        sweep = Sweep.model_validate(raw)
    except ValidationError as exc:
        raise SweepError(_sweep_error(path, exc)) from None
    base = load_params(sweep.params)  # a missing or bad base params file: its own one line
    base_raw = yaml.safe_load(sweep.params.read_text()) or {}
    known = set(base.flat())
    space = {**sweep.grid, **(sweep.random.space if sweep.random else {})}
    for key in space:
        where = "grid" if key in sweep.grid else "random.space"
        if key == "seed":
            raise SweepError(f"{path}: {where}: seed: seeds are listed under `seeds`, not searched over")
        if key not in known:
            raise SweepError(f"{path}: {where}: {key}: unknown params key (dotted keys of the params reference,"
                             " such as agent.learning_rate)")
    if sweep.random and set(sweep.random.space) & set(sweep.grid):
        raise SweepError(f"{path}: random.space: {sorted(set(sweep.random.space) & set(sweep.grid))[0]}:"
                         " also in grid; search each key one way")
    return sweep, _trials(path, sweep, base_raw, base)


def _settings(sweep: Sweep) -> list[dict]:
    import numpy as np

    grid = [dict(zip(sweep.grid, values)) for values in itertools.product(*sweep.grid.values())]
    if not sweep.random:
        return grid
    rng = np.random.default_rng(sweep.random.seed)
    draws = [{key: dist.draw(rng) for key, dist in sweep.random.space.items()} for _ in range(sweep.random.samples)]
    return [{**point, **draw} for draw in draws for point in grid]


def _trials(path: Path, sweep: Sweep, base_raw: dict, base: Params) -> list[Trial]:
    flat = base.flat()
    settings: list[tuple[str, dict]] = [(BASE, {})]
    for overrides in _settings(sweep):
        changed = {k: v for k, v in overrides.items() if flat[k] != v}
        if changed and all(changed != seen for _, seen in settings):  # the base or a repeat runs once
            settings.append((f"s{len(settings)}", overrides))
    trials = []
    for setting, overrides in settings:
        for seed in sweep.seeds:
            raw = json.loads(json.dumps(base_raw))
            for key, value in overrides.items():
                _set(raw, key, value)
            raw["seed"] = seed
            label = Trial(id="", setting=setting, overrides=overrides, seed=seed, params={}).label
            try:
                params = parse_params(raw, f"{path}: setting {label}, seed {seed}")
            except ParamsError as exc:
                raise SweepError(str(exc)) from None
            if sweep.asha and not 0 < params.train.eval_every <= sweep.asha.grace_steps or (
                    sweep.asha and params.train.eval_episodes == 0):
                raise SweepError(f"{path}: asha.grace_steps: ASHA compares validation scores, so it needs"
                                 f" train.eval_episodes >= 1 and grace_steps >= train.eval_every"
                                 f" ({params.train.eval_every}) (setting {label}, seed {seed})")
            trials.append(Trial(id=f"{setting}-seed{seed}", setting=setting, overrides=overrides, seed=seed,
                                params=params.model_dump()))
    return trials


# --- the cluster --------------------------------------------------------------------------------------

def _is_local_store(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:")) or "://" not in uri


def check_cluster(address: str | None, uri: str) -> None:
    """An existing cluster must answer at `address`, and its nodes must reach the tracking store."""
    from invaders.tracking.store import redact

    if address is None:
        return
    if _is_local_store(uri):
        raise SweepError(f"a sweep on a Ray cluster (--address {address}) needs a tracking server that every node"
                         f" can reach (MLFLOW_TRACKING_URI=http://host:port); {redact(uri)!r} is a file on this"
                         " machine (run without --address for a sweep on this machine only)")
    if address == "auto":
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise SweepError(f"--address: {address!r}: expected HOST:PORT of a Ray cluster's head (e.g. 10.0.0.5:6379)")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise SweepError(f"--address {address}: no Ray cluster answers there ({exc.strerror or exc});"
                         " start one with `ray start --head --port PORT`") from None


# --- a trial ------------------------------------------------------------------------------------------

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
            "rewards": [float(r) for r in _column(out / "eval" / "episodes.csv", "reward")],
            "selected_step": trained["selected_step"], "run_id": run_id, "node": node, "done": True}


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr)  # Ray keeps a trial's stdout for itself


def _column(path: Path, name: str) -> list[str]:
    import csv

    with open(path, newline="") as f:
        return [row[name] for row in csv.DictReader(f)]


def ray_trial(config: dict) -> None:
    """`run_trial` as a Ray Tune function trainable."""
    import ray

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


# --- the driver ---------------------------------------------------------------------------------------

class ProgressTable(tune.Callback):
    """The live table of trials (state, node, step, latest validation score), on stdout when it changes,
    at most every `every` seconds, and at the end. Tune keeps it with the experiment (it is pickled)."""

    def __init__(self, trials: list[Trial], every: float = 5.0):
        self.rows = {t.id: {"setting": t.label, "state": "PENDING", "node": "", "step": 0, "val": math.nan}
                     for t in trials}
        self.every, self.last, self.dirty = every, 0.0, True

    def update(self, trial, **values) -> None:
        row = self.rows[trial.config["trial"]["id"]]
        for key, value in values.items():
            if value is not None and row.get(key) != value:
                row[key], self.dirty = value, True

    def show(self, force: bool = False) -> None:
        if not self.dirty or (not force and time.monotonic() - self.last < self.every):
            return
        width = max(len(r["setting"]) for r in self.rows.values())
        lines = [f"{'trial':<14} {'setting':<{width}} {'state':<10} {'node':<12} {'step':>8} {'validation':>10}"]
        for trial_id, r in self.rows.items():
            val = "" if r["val"] is None or math.isnan(r["val"]) else f"{r['val']:.1f}"
            lines.append(f"{trial_id:<14} {r['setting']:<{width}} {r['state']:<10} {r['node']:<12} {r['step']:>8}"
                         f" {val:>10}")
        print("\n".join(lines) + "\n", flush=True)
        self.last, self.dirty = time.monotonic(), False

    def on_trial_start(self, iteration, trials, trial, **info):
        self.update(trial, state="RUNNING")
        self.show()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.update(trial, state="RUNNING", node=result.get("node"), step=result.get("step"),
                    val=result.get("val_mean_reward"))
        self.show()

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.update(trial, state="DONE" if trial.last_result.get("done") else "STOPPED")  # ASHA stops some
        self.show()

    def on_trial_error(self, iteration, trials, trial, **info):
        self.update(trial, state="ERROR")
        self.show(force=True)

    def on_trial_recover(self, iteration, trials, trial, **info):
        self.update(trial, state="RESTARTING")
        self.show(force=True)


def run(path: Path, address: str | None = None, resume: bool = False, write_best: Path | None = None) -> dict:
    """`invaders sweep`: validate, run every trial on the cluster, summarize; returns the summary."""
    from invaders.tracking.store import connect, start_run, tracking_uri

    sweep, trials = load(path)
    base = Params.model_validate(trials[0].params)
    address = address or os.environ.get("RAY_ADDRESS") or None
    uri = tracking_uri()
    check_cluster(address, uri)
    out = (SWEEPS / sweep.name).resolve()
    state = out / "sweep.json"
    if resume and not state.is_file():
        raise SweepError(f"--resume: {out} holds no sweep to continue (run it without --resume first)")
    if not resume and state.exists():
        raise SweepError(f"{out}: an earlier sweep named {sweep.name!r} is there: continue it with --resume,"
                         " or remove the directory to start again")
    storage = sweep.storage or (out / "ray").as_uri()

    os.environ["MLFLOW_TRACKING_URI"] = uri  # absolute: a trial's working directory is Ray's, not ours
    experiment_id = connect(base.mlflow.experiment)
    import mlflow

    if resume:
        parent = files.read_json(state)["parent_run_id"]
        start_run(experiment_id, parent, sweep.name, {})
    else:
        parent = start_run(experiment_id, None, f"sweep-{sweep.name}", {"stage": "sweep", "sweep": sweep.name})
        mlflow.MlflowClient().log_artifact(parent, str(path))
        for key, value in {"sweep.params": sweep.params, "sweep.seeds": sweep.seeds, "sweep.metric": sweep.metric,
                           "sweep.trials": len(trials), "sweep.settings": len(trials) // len(sweep.seeds),
                           "sweep.cpus_per_trial": sweep.resources.cpus}.items():
            mlflow.MlflowClient().log_param(parent, key, str(value))
        files.write_json(state, {"parent_run_id": parent, "sweep_file": str(path)})

    results = _tune(sweep, trials, out, storage, address, uri, parent, resume)

    from invaders.sweep.summary import summarize, write

    summary = summarize(sweep, trials, results, alpha=base.promote.alpha)
    write(summary, out)
    end_unfinished_runs(summary["trials"], mlflow.MlflowClient())
    failed = [t["id"] for t in summary["trials"] if t["state"] == "ERROR"]
    with mlflow.start_run(run_id=parent):
        for name in ("summary.json", "summary.md", "scores.png"):
            mlflow.log_artifact(str(out / name))
        mlflow.log_metrics({"trials": len(trials), "trials_failed": len(failed),
                            "trials_scored": sum(t["score"] is not None for t in summary["trials"])})
        if summary["best"] is not None:
            best = summary["settings"][summary["best"]]
            mlflow.log_metrics({"best_mean": best["mean"], "best_iqm": best["iqm"]})
        mlflow.set_tags({"sweep.best": summary["best"], "sweep.beats_base": summary["vs_base"]["significant"],
                         "mlflow.note.content": (out / "summary.md").read_text()})
    mlflow.MlflowClient().set_terminated(parent, "FAILED" if failed else "FINISHED")
    print((out / "summary.md").read_text())
    if write_best and summary["best"] is not None:
        best_params = next(t for t in trials if t.setting == summary["best"]).params | {"seed": base.seed}
        files.write_text(write_best, yaml.safe_dump(Params.model_validate(best_params).model_dump(), sort_keys=False))
        print(f"sweep: wrote the best setting's params ({summary['best']}) to {write_best}")
    if failed:  # the summary covers the others; Ray's error files say what happened
        print(f"sweep: {len(failed)} trials failed after their restarts ({', '.join(failed)}); their errors are in"
              f" {storage}/{sweep.name}/<trial>/error.txt", file=sys.stderr)
        raise SystemExit(1)
    return summary


def end_unfinished_runs(trials: list[dict], client) -> None:
    """Ray ends a trial that ASHA stops, or whose last attempt died with its node, by killing its
    process, so its MLflow run would stay RUNNING for good: mark it KILLED (stopped early) or FAILED."""
    for trial in trials:
        if trial["state"] == "DONE" or not trial["run_id"]:
            continue
        if client.get_run(trial["run_id"]).info.status != "RUNNING":
            continue  # the trial ended it itself (an error inside training)
        if trial["state"] == "STOPPED":
            client.set_tag(trial["run_id"], "sweep.stopped", "early, by the sweep's ASHA scheduler")
        client.set_terminated(trial["run_id"], "KILLED" if trial["state"] == "STOPPED" else "FAILED")


def _tune(sweep: Sweep, trials: list[Trial], out: Path, storage: str, address: str | None, uri: str, parent: str,
          resume: bool) -> dict[str, dict]:
    """Run the trials with Ray Tune; each trial's last result (or its error) by trial id."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # our own table instead of Ray's output
    import ray

    # The trials' tracking: the URI (absolute) and the login, if any, from this environment, so no
    # secret is written into the trials' configs, which Ray keeps on disk.
    env = {k: os.environ[k] for k in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
                                      "MLFLOW_TRACKING_TOKEN", "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL",
                                      "MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT",
                                      "TF_CPP_MIN_LOG_LEVEL", "TF_USE_LEGACY_KERAS") if k in os.environ}
    env.setdefault("TF_USE_LEGACY_KERAS", "1")
    ray.init(address=address, runtime_env={"env_vars": env}, include_dashboard=False, log_to_driver=False,
             logging_level="WARNING", configure_logging=True)
    try:
        resources = {"cpu": sweep.resources.cpus}
        if sweep.resources.memory_gb:
            resources["memory"] = int(sweep.resources.memory_gb * 2**30)
        trainable = tune.with_resources(ray_trial, resources)
        table = ProgressTable(trials)
        common = {"out": str(out / "trials"), "cpus": sweep.resources.cpus, "parent_run_id": parent,
                  "sweep": sweep.name}
        experiment = f"{storage.rstrip('/')}/{sweep.name}"
        if resume and tune.Tuner.can_restore(experiment):
            tuner = tune.Tuner.restore(experiment, trainable=trainable, resume_errored=True)
        else:
            scheduler = None
            if sweep.asha:
                from ray.tune.schedulers import ASHAScheduler

                scheduler = ASHAScheduler(time_attr="step", metric="val_mean_reward", mode="max",
                                          max_t=max(t.params["train"]["steps"] for t in trials),
                                          grace_period=sweep.asha.grace_steps,
                                          reduction_factor=sweep.asha.reduction_factor)
            tuner = tune.Tuner(
                trainable,
                param_space={**common, "trial": tune.grid_search([t.model_dump() for t in trials])},
                tune_config=tune.TuneConfig(scheduler=scheduler, reuse_actors=False,
                                            trial_name_creator=_trial_name, trial_dirname_creator=_trial_name),
                run_config=tune.RunConfig(
                    name=sweep.name, storage_path=storage, verbose=0,
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                    failure_config=tune.FailureConfig(max_failures=sweep.max_failures),
                    callbacks=[table]))
        before = signal.getsignal(signal.SIGINT)
        grid = tuner.fit()
        # Tune puts back the SIGINT handler it replaced only when a signal stopped it (Ctrl-C), after
        # saving its state and ending the running trials, which it then reports as terminated.
        stopped = signal.getsignal(signal.SIGINT) is before
        signal.signal(signal.SIGINT, before)
        results = {}
        for result in grid:
            trial_id = result.config["trial"]["id"]
            results[trial_id] = {**(result.metrics or {}), "error": None if result.error is None else
                                 (str(result.error).strip().splitlines() or ["error"])[0][:300]}
        if stopped and any(not r.get("done") and not r["error"] for r in results.values()):
            raise SweepInterrupted(f"sweep {sweep.name!r} stopped before its trials ended; continue it with"
                                   " `invaders sweep ... --resume`")
        final = ProgressTable(trials)  # the table as it ends (a resumed sweep's callback is Ray's copy)
        for trial_id, r in results.items():
            final.rows[trial_id].update(state="ERROR" if r["error"] else "DONE" if r.get("done") else "STOPPED",
                                        node=r.get("node") or "", step=r.get("step") or 0,
                                        val=r.get("val_mean_reward", math.nan))
        final.show(force=True)
        return results
    finally:
        ray.shutdown()


def _trial_name(trial) -> str:
    return trial.config["trial"]["id"]
