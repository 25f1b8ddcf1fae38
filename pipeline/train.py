"""Stage `train`: keras-rl2 DQN on the built network; one MLflow run with everything.

A run that is killed continues from its last good checkpoint when the stage runs again,
in the same MLflow run, and ends with the same outputs as an uninterrupted one.
"""

import time
from pathlib import Path

from invaders import files, runnote
from invaders.config import load_params
from invaders.errors import exit_on_user_error
from invaders.tracking import connect, log_output_hashes, metrics_sink, run_exists

MODEL = Path("data/model/model.keras")
OUT = Path("data/train")
CHECKPOINTS = OUT / "checkpoints"


@exit_on_user_error
def main() -> None:
    params = load_params()
    files.require(MODEL)
    connect(params.mlflow.experiment)
    import mlflow
    import numpy as np

    from invaders import checkpoint
    from invaders.model import load_network
    from invaders.training import HISTORY_FIELDS, VALIDATION_FIELDS, save_networks, train, train_summary

    fingerprint = checkpoint.fingerprint(params, MODEL)
    resume = checkpoint.latest(CHECKPOINTS, fingerprint)
    run_id = None
    if resume:
        print(f"train: resuming from the checkpoint at step {resume.meta['step']}")
        run_id = resume.meta["run_id"] if run_exists(resume.meta["run_id"]) else None

    OUT.mkdir(parents=True, exist_ok=True)
    with mlflow.start_run(run_id=run_id, run_name=f"dqn-{params.model.architecture}", tags={"stage": "train"},
                          log_system_metrics=True) as run:
        if run_id is None:
            mlflow.log_params(params.flat())
        if resume:  # the same run; or, if the store lost it, a new one linked to the killed one
            mlflow.set_tag("resumed_from_step", resume.meta["step"])
            if run_id is None:
                mlflow.set_tag("resumed_from_run", resume.meta["run_id"])
        started = time.perf_counter() - (resume.meta["progress"]["elapsed"] if resume else 0.0)
        agent, history, validator = train(params, MODEL, sink=metrics_sink(run_id), checkpoint_dir=CHECKPOINTS,
                                          checkpoint_meta={"fingerprint": fingerprint, "run_id": run.info.run_id},
                                          resume=resume)
        summary = train_summary(params, history, validator.rows, time.perf_counter() - started)

        save_networks(agent, validator, params.train.keep, OUT)
        files.write_csv(OUT / "history.csv", history, HISTORY_FIELDS)
        files.write_csv(OUT / "validation.csv", validator.rows, VALIDATION_FIELDS)
        files.write_json(OUT / "metrics.json", summary)
        mlflow.log_metrics({f"train_{k}": float(v) for k, v in summary.items() if isinstance(v, (int, float))})
        mlflow.log_artifact(str(OUT / "history.csv"))
        mlflow.log_artifact(str(OUT / "validation.csv"))
        log_output_hashes(MODEL, OUT / "model.keras", OUT / "last.keras", OUT / "history.csv", OUT / "validation.csv",
                          OUT / "metrics.json")  # + its start network
        # The MLflow model is the saved file's network, uncompiled: what evaluate and play load.
        trained = load_network(OUT / "model.keras")
        example = np.zeros((1, *trained.input_shape[1:]), dtype=np.uint8)
        mlflow.tensorflow.log_model(trained, name="model", input_example=example)
        files.write_json(OUT / "mlflow_run.json", {"run_id": run.info.run_id})
        runnote.write(run.info.run_id)
    checkpoint.clear(CHECKPOINTS)  # the outputs supersede them
    kept = f"kept the network from step {summary['selected_step']}"
    if summary["selected_val_mean_reward"] is not None:
        kept += f" (validation mean {summary['selected_val_mean_reward']:.1f})"
    print(f"train: {summary['steps']} steps, {summary['episodes']} episodes, {summary['steps_per_s']} steps/s; {kept}")


if __name__ == "__main__":
    main()
