"""Stage `train`: keras-rl2 DQN on the built network; one MLflow run with everything (`invaders.stages.train`)."""

import os

from invaders.config import load_params
from invaders.errors import exit_on_user_error
from invaders.stages import arguments
from invaders.stages.train import train


@exit_on_user_error
def main() -> None:
    paths = arguments(train)
    # The outbox retries on its own, so a request may fail fast instead of in MLflow's long back-off.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")
    train(load_params(), **paths)


if __name__ == "__main__":
    main()
