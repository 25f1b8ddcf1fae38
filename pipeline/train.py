"""Stage `train`: keras-rl2 DQN on the built network; one MLflow run with everything."""

import time
from pathlib import Path

from invaders import files
from invaders.config import load_params
from invaders.errors import exit_on_user_error
from invaders.tracking import connect

MODEL = Path("data/model/model.keras")
OUT = Path("data/train")


@exit_on_user_error
def main() -> None:
    params = load_params()
    files.require(MODEL)
    connect(params.mlflow.experiment)
    import mlflow
    import numpy as np

    from invaders.model import load_network, save_network
    from invaders.training import HISTORY_FIELDS, train, train_summary

    OUT.mkdir(parents=True, exist_ok=True)
    with mlflow.start_run(run_name=f"dqn-{params.model.architecture}", tags={"stage": "train"},
                          log_system_metrics=True) as run:
        mlflow.log_params(params.flat())
        started = time.perf_counter()
        agent, history = train(params, MODEL, OUT, sink=lambda step, m: mlflow.log_metrics(m, step=step))
        summary = train_summary(history, params.train.steps, time.perf_counter() - started)

        save_network(agent.model, OUT / "model.keras")
        files.write_csv(OUT / "history.csv", history, HISTORY_FIELDS)
        files.write_json(OUT / "metrics.json", summary)
        mlflow.log_metrics({f"train_{k}": float(v) for k, v in summary.items() if v is not None})
        mlflow.log_artifact(str(OUT / "history.csv"))
        # The MLflow model is the saved file's network, uncompiled: what evaluate and play load.
        trained = load_network(OUT / "model.keras")
        example = np.zeros((1, *trained.input_shape[1:]), dtype=np.uint8)
        mlflow.tensorflow.log_model(trained, name="model", input_example=example)
        files.write_json(OUT / "mlflow_run.json", {"run_id": run.info.run_id})
    print(f"train: {summary['steps']} steps, {summary['episodes']} episodes, {summary['steps_per_s']} steps/s")


if __name__ == "__main__":
    main()
