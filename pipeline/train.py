"""Stage `train`: keras-rl2 DQN on the built network; one MLflow run with everything.

A run that is killed continues from its last good checkpoint when the stage runs again,
in the same MLflow run, and ends with the same outputs as an uninterrupted one.

Tracking goes through an outbox (invaders.outbox), so training goes on while the server is away.
If it is still away when training ends, the outputs are written anyway, the unsent records are
kept in `data/train/unsent-tracking.jsonl` and the stage exits with code 3; run it again when the
server is back and it sends them, without training again.
"""

import os
import time
from pathlib import Path

from invaders import files, reproducibility, runnote
from invaders.config import load_params
from invaders.errors import exit_on_user_error
from invaders.tracking import (TrackingPending, connect, end_run, log_output_hashes, metrics_sink, run_exists,
                               start_run)

MODEL = Path("data/model/model.keras")
OUT = Path("data/train")
CHECKPOINTS = OUT / "checkpoints"
UNSENT = OUT / "unsent-tracking.jsonl"
OUTPUTS = [OUT / name for name in ("model.keras", "last.keras", "history.csv", "validation.csv", "metrics.json")]
# Seconds to wait at the end for a tracking server that is away (a restart takes tens of seconds).
FLUSH_WAIT = float(os.environ.get("INVADERS_TRACKING_WAIT", "60"))


def pip_requirements() -> list[str]:
    """What loading the MLflow model needs, at the installed (locked) versions. Given, so MLflow does not
    infer them by loading the model in a second Python process that imports TensorFlow again (seconds)."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("tensorflow", "tf-keras", "numpy")]


def finish_run(run_id: str) -> None:
    """The run's artifacts, output hashes and model, from the outputs on disk; then it is FINISHED."""
    import mlflow
    import numpy as np

    from invaders.model import load_network

    with mlflow.start_run(run_id=run_id):
        mlflow.log_artifact(str(OUT / "history.csv"))
        mlflow.log_artifact(str(OUT / "validation.csv"))
        log_output_hashes(MODEL, *OUTPUTS)  # + its start network
        # The MLflow model is the saved file's network, uncompiled: what evaluate and play load.
        trained = load_network(OUT / "model.keras")
        example = np.zeros((1, *trained.input_shape[1:]), dtype=np.uint8)
        mlflow.tensorflow.log_model(trained, name="model", input_example=example, pip_requirements=pip_requirements())
    runnote.write(run_id)


def deliver(outbox, fingerprint: str) -> None:
    """Send what the outbox holds and finish the run; if the server is away, keep it all for the next run."""
    from mlflow.exceptions import MlflowException

    from invaders.outbox import save_unsent

    unsent = outbox.close(FLUSH_WAIT)
    if not unsent:
        try:
            finish_run(outbox.run_id)
            UNSENT.unlink(missing_ok=True)
            return
        except (MlflowException, OSError):  # the server went away while the artifacts were sent
            pass
    save_unsent(UNSENT, outbox.run_id, fingerprint, unsent)
    raise TrackingPending(f"train: outputs written, but the tracking server does not answer: {len(unsent)} records"
                          f" and the run's artifacts are kept in {UNSENT}; run the stage again when it is back"
                          " (nothing is trained again)")


@exit_on_user_error
def main() -> None:
    # The outbox retries on its own, so a request may fail fast instead of in MLflow's long back-off.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")
    params = load_params()
    files.require(MODEL)
    reproducibility.apply(params)  # before TensorFlow's first op
    experiment_id = connect(params.mlflow.experiment)

    from tqdm import tqdm

    from invaders import checkpoint
    from invaders.outbox import Outbox, SystemMetrics, read_unsent
    from invaders.training import HISTORY_FIELDS, VALIDATION_FIELDS, save_networks, train, train_summary

    fingerprint = checkpoint.fingerprint(params, MODEL)
    if (kept := read_unsent(UNSENT)) is not None:  # an earlier run ended while the server was away
        header, records = kept
        outbox = Outbox(header["run_id"], OUT / ".outbox-spill.jsonl")
        for record in records:
            outbox.put(record)
        deliver(outbox, header["fingerprint"])
        print(f"train: sent {len(records)} tracking records and the artifacts kept by run {header['run_id']}")
        if header["fingerprint"] == fingerprint and all(p.is_file() for p in OUTPUTS):
            print("train: the outputs are those of the current params and code: nothing to train")
            return

    resume = checkpoint.latest(CHECKPOINTS, fingerprint)
    run_id = None
    if resume:
        print(f"train: resuming from the checkpoint at step {resume.meta['step']}")
        run_id = resume.meta["run_id"] if run_exists(resume.meta["run_id"]) else None
    resumed_run = run_id
    run_id = start_run(experiment_id, run_id, f"dqn-{params.model.architecture}", {"stage": "train"})
    OUT.mkdir(parents=True, exist_ok=True)
    outbox = Outbox(run_id, OUT / ".outbox-spill.jsonl", echo=tqdm.write)
    if resumed_run is None:
        outbox.log_params(params.flat())
    outbox.set_tags(reproducibility.tags())  # a resumed run records the machine it finished on
    if resume:  # the same run; or, if the store lost it, a new one linked to the killed one
        outbox.set_tags({"resumed_from_step": resume.meta["step"]}
                        | ({} if resumed_run else {"resumed_from_run": resume.meta["run_id"]}))
    system = SystemMetrics(outbox, resume=resumed_run is not None)
    system.start()
    started = time.perf_counter() - (resume.meta["progress"]["elapsed"] if resume else 0.0)
    try:
        agent, history, validator = train(params, MODEL, sink=metrics_sink(outbox, resumed_run),
                                          checkpoint_dir=CHECKPOINTS,
                                          checkpoint_meta={"fingerprint": fingerprint, "run_id": run_id}, resume=resume)
    except BaseException as exc:  # Ctrl-C or a crash: send what was logged, mark the run, re-raise
        system.finish()
        outbox.close(5.0)
        end_run(run_id, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
    system.finish()
    summary = train_summary(params, history, validator.rows, time.perf_counter() - started)

    save_networks(agent, validator, params.train.keep, OUT)
    files.write_csv(OUT / "history.csv", history, HISTORY_FIELDS)
    files.write_csv(OUT / "validation.csv", validator.rows, VALIDATION_FIELDS)
    files.write_json(OUT / "metrics.json", summary)
    files.write_json(OUT / "mlflow_run.json", {"run_id": run_id})
    checkpoint.clear(CHECKPOINTS)  # the outputs supersede them
    outbox.log_metrics({f"train_{k}": float(v) for k, v in summary.items() if isinstance(v, (int, float))}, step=0)
    deliver(outbox, fingerprint)
    kept = f"kept the network from step {summary['selected_step']}"
    if summary["selected_val_mean_reward"] is not None:
        kept += f" (validation mean {summary['selected_val_mean_reward']:.1f})"
    print(f"train: {summary['steps']} steps, {summary['episodes']} episodes, {summary['steps_per_s']} steps/s; {kept}")


if __name__ == "__main__":
    main()
