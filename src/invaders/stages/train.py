"""Stage `train`: keras-rl2 DQN on the built network; one MLflow run with everything.

A run that is killed continues from its last good checkpoint when the stage runs again, in the same
MLflow run, and ends with the same outputs as an uninterrupted one. Tracking goes through an outbox
(invaders.tracking.outbox), so training goes on while the server is away. If it is still away when
training ends, the outputs are written anyway, the unsent records are kept in `<out>/unsent-tracking.jsonl`
and TrackingPending (exit code 3) is raised; run again when the server is back, the stage sends them
without training again. A refusal for good (a writer's permission revoked mid-run, a malformed batch)
is not waited for: the records are kept at once, training goes on to the end, the stage exits 3 naming
the server's answer, and a run after the cause is fixed sends them the same way."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from invaders import files, reproducibility, sources
from invaders.config import Params
from invaders.stages import Echo
from invaders.tracking import runnote
from invaders.tracking.store import (LOGIN_HINT, TrackingPending, connect, end_run, log_output_hashes, metrics_sink,
                                    permanent, refusal, run_exists, start_run, stopped_by)


TRAIN_OUTPUTS = ("model.keras", "last.keras", "history.csv", "validation.csv", "metrics.json")
# Seconds to wait at the end for a tracking server that is away (a restart takes tens of seconds).
FLUSH_WAIT = float(os.environ.get("INVADERS_TRACKING_WAIT", "60"))
FINISH_RETRY = 5.0  # seconds between tries at sending the artifacts


def pip_requirements() -> list[str]:
    """What loading the MLflow model needs, at the installed (locked) versions. Given, so MLflow does not
    infer them by loading the model in a second Python process that imports TensorFlow again (seconds)."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("tensorflow", "tf-keras", "numpy")]


def _finish_run(run_id: str, model_path: Path, out: Path) -> None:
    """The run's artifacts, output hashes and model, from the outputs on disk; then it is FINISHED."""
    import mlflow
    import numpy as np

    from invaders.rl.model import load_network

    with mlflow.start_run(run_id=run_id):
        mlflow.log_artifact(str(out / "history.csv"))
        mlflow.log_artifact(str(out / "validation.csv"))
        log_output_hashes(model_path, *(out / name for name in TRAIN_OUTPUTS))  # + its start network
        # The MLflow model is the saved file's network, uncompiled: what evaluate and play load.
        trained = load_network(out / "model.keras")
        example = np.zeros((1, *trained.input_shape[1:]), dtype=np.uint8)
        mlflow.tensorflow.log_model(trained, name="model", input_example=example, pip_requirements=pip_requirements())
    runnote.write(run_id)


def _fix(exc: BaseException, experiment: str) -> str:
    """What a refusal for good asks of the user, if the refusal alone does not say it."""
    kind = refusal(exc)
    if kind == "forbidden":
        return f" (user {os.environ.get('MLFLOW_TRACKING_USERNAME')!r} needs EDIT on experiment {experiment!r})"
    return f" ({LOGIN_HINT})" if kind == "unauthenticated" else ""


def _deliver(outbox, fingerprint: str, model_path: Path, out: Path, experiment: str) -> None:
    """Send what the outbox holds and finish the run; if the server is away or refuses, keep it all for the next run."""
    from mlflow.exceptions import MlflowException

    from invaders.tracking.outbox import RECORDS, save_unsent

    unsent_file = out / "unsent-tracking.jsonl"
    deadline = time.monotonic() + FLUSH_WAIT
    unsent = outbox.close(FLUSH_WAIT)  # at once if the server refused the records
    refused, what = outbox.refused, RECORDS
    while not unsent and refused is None:
        try:
            _finish_run(outbox.run_id, model_path, out)  # each part overwrites its own: safe to repeat
            unsent_file.unlink(missing_ok=True)
            return
        except (MlflowException, OSError) as exc:  # the server went away while the artifacts were sent, or refused them
            if permanent(exc):
                refused, what = exc, "the run's artifacts"
                break
            if time.monotonic() + FINISH_RETRY > deadline:
                break
            time.sleep(FINISH_RETRY)  # within the same wait: a restart takes tens of seconds
    save_unsent(unsent_file, outbox.run_id, fingerprint, unsent)
    kept = f"{len(unsent)} records and the run's artifacts are kept in {unsent_file}"
    if refused is not None:
        raise TrackingPending(f"train: outputs written, but {stopped_by(refused, what)}{_fix(refused, experiment)};"
                              f" {kept}; run the stage again once that is fixed (nothing is trained again)")
    raise TrackingPending(f"train: outputs written, but the tracking server does not answer: {kept}; run the stage"
                          " again when it is back (nothing is trained again)")


def train(params: Params, model: Path = Path("data/model/model.keras"), out: Path = Path("data/train"),
          tags: dict[str, str] | None = None, on_checkpoint: Callable[[Path, dict], None] | None = None,
          echo: Echo = print) -> str:
    """Train the network at `model` into `out` (model.keras, last.keras, history.csv, validation.csv,
    metrics.json, mlflow_run.json), tracked in one MLflow run with `tags` (a sweep trial's parent link);
    returns the run's id. Checkpoints go to `out/checkpoints`; `on_checkpoint(path, metrics)` is told of
    each, with the latest validation score (a sweep reports them to Ray). Resumes from the newest good one."""
    files.require(model)
    reproducibility.apply(params)  # before TensorFlow's first op
    experiment_id = connect(params.mlflow.experiment)

    from tqdm import tqdm

    from invaders.compat.mlflow import SystemMetrics
    from invaders.rl import checkpoint
    from invaders.rl import loop  # its `train` is the fit loop this stage runs
    from invaders.tracking.outbox import Outbox, read_unsent

    checkpoints, unsent_file = out / "checkpoints", out / "unsent-tracking.jsonl"
    # Only code training runs decides whether a checkpoint is still good: an edit elsewhere keeps it.
    fingerprint = checkpoint.fingerprint(params, model, sources.digest(sources.closure(Path(__file__))))
    if (kept := read_unsent(unsent_file)) is not None:  # an earlier run ended while the server was away
        header, records = kept
        outbox = Outbox(header["run_id"], out / ".outbox-spill.jsonl")
        for record in records:
            outbox.put(record)
        _deliver(outbox, header["fingerprint"], model, out, params.mlflow.experiment)
        echo(f"train: sent {len(records)} tracking records and the artifacts kept by run {header['run_id']}")
        if header["fingerprint"] == fingerprint and all((out / name).is_file() for name in TRAIN_OUTPUTS):
            echo("train: the outputs are those of the current params and code: nothing to train")
            return header["run_id"]

    resume = checkpoint.latest(checkpoints, fingerprint)
    run_id = None
    if resume:
        echo(f"train: resuming from the checkpoint at step {resume.meta['step']}")
        run_id = resume.meta["run_id"] if run_exists(resume.meta["run_id"]) else None
    resumed_run = run_id
    name = f"{'qr-dqn' if params.agent.head == 'quantile' else 'dqn'}-{params.model.architecture}"  # for the UI
    run_id = start_run(experiment_id, run_id, name, {"stage": "train", **(tags or {})})
    out.mkdir(parents=True, exist_ok=True)
    outbox = Outbox(run_id, out / ".outbox-spill.jsonl", echo=tqdm.write)
    if resumed_run is None:
        outbox.log_params(params.flat())
    outbox.set_tags(reproducibility.tags())  # a resumed run records the machine it finished on
    if resume:  # the same run; or, if the store lost it, a new one linked to the killed one
        outbox.set_tags({"resumed_from_step": resume.meta["step"]}
                        | ({} if resumed_run else {"resumed_from_run": resume.meta["run_id"]}))
    sink = metrics_sink(outbox, resumed_run)
    if on_checkpoint:  # the latest validation score goes with each checkpoint's report
        latest = {"val_mean_reward": (resume.meta["validation"]["rows"] or [{}])[-1].get("mean_reward")
                  if resume else None}
        tracked = sink

        def sink(step: int, metrics: dict[str, float]) -> None:
            latest.update((k, v) for k, v in metrics.items() if k == "val_mean_reward")
            tracked(step, metrics)

        def saved(path: Path, step: int) -> None:
            on_checkpoint(path, {"step": step, "run_id": run_id, **latest})
    system = SystemMetrics(outbox, resume=resumed_run is not None)
    system.start()
    started = time.perf_counter() - (resume.meta["progress"]["elapsed"] if resume else 0.0)
    try:
        agent, history, validator = loop.train(params, model, sink=sink, checkpoint_dir=checkpoints,
                                          checkpoint_meta={"fingerprint": fingerprint, "run_id": run_id},
                                          resume=resume, on_checkpoint=saved if on_checkpoint else None)
    except BaseException as exc:  # Ctrl-C or a crash: send what was logged, mark the run, re-raise
        system.finish()
        outbox.close(5.0)
        end_run(run_id, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
    system.finish()
    summary = loop.train_summary(params, history, validator.rows, time.perf_counter() - started)

    loop.save_networks(agent, validator, params.train.keep, out)
    files.write_csv(out / "history.csv", history, loop.HISTORY_FIELDS)
    files.write_csv(out / "validation.csv", validator.rows, loop.VALIDATION_FIELDS)
    files.write_json(out / "metrics.json", summary)
    files.write_json(out / "mlflow_run.json", {"run_id": run_id})
    checkpoint.clear(checkpoints)  # the outputs supersede them
    outbox.log_metrics({f"train_{k}": float(v) for k, v in summary.items() if isinstance(v, (int, float))}, step=0)
    _deliver(outbox, fingerprint, model, out, params.mlflow.experiment)
    kept = f"kept the network from step {summary['selected_step']}"
    if summary["selected_val_mean_reward"] is not None:
        kept += f" (validation mean {summary['selected_val_mean_reward']:.1f})"
    echo(f"train: {summary['steps']} steps, {summary['episodes']} episodes, {summary['steps_per_s']} steps/s; {kept}")
    return run_id
