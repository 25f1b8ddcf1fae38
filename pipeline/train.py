"""Stage `train`: keras-rl2 DQN on the built network; one MLflow run with everything.

A run that is killed continues from its last good checkpoint when the stage runs again,
in the same MLflow run, and ends with the same outputs as an uninterrupted one.

Tracking goes through an outbox (invaders.outbox), so training goes on while the server is away.
If it is still away when training ends, the outputs are written anyway, the unsent records are
kept in `data/train/unsent-tracking.jsonl` and the stage exits with code 3; run it again when the
server is back and it sends them, without training again. The run itself is `invaders.runs.train_run`,
which every sweep trial runs too.
"""

import os
from pathlib import Path

from invaders import files, reproducibility
from invaders.config import load_params
from invaders.errors import exit_on_user_error
from invaders.tracking import connect

MODEL = Path("data/model/model.keras")
OUT = Path("data/train")


@exit_on_user_error
def main() -> None:
    # The outbox retries on its own, so a request may fail fast instead of in MLflow's long back-off.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")
    params = load_params()
    files.require(MODEL)
    reproducibility.apply(params)  # before TensorFlow's first op
    experiment_id = connect(params.mlflow.experiment)

    from invaders.runs import train_run

    train_run(params, MODEL, OUT, experiment_id)


if __name__ == "__main__":
    main()
