"""MLflow: where runs go, and checking that the store answers before any long work starts."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from invaders.errors import UserError

# Relative to the stage's working directory, which `dvc repro` sets to the repo root.
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


class TrackingError(UserError):
    pass


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


@contextmanager
def _env(**values: str):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def connect(experiment: str) -> str:
    """Point MLflow at the tracking store and select `experiment`; returns its id.

    An unreachable or wrong store fails here, within seconds, instead of after training.
    """
    import mlflow

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    # Only for this first call: no retries with back-off, a short timeout.
    with _env(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="10"):
        try:
            return mlflow.set_experiment(experiment).experiment_id
        except Exception as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise TrackingError(f"MLflow tracking URI {uri!r} is not usable: {reason}") from None



def log_output_hashes(*paths: str | Path) -> None:
    """Tag the active run with each output's SHA-256, so a rerun can be checked against it."""
    import mlflow

    from invaders.files import sha256

    mlflow.set_tags({f"sha256.{Path(p).as_posix()}": sha256(p) for p in paths})


def run_exists(run_id: str) -> bool:
    """Whether the store holds this run, undeleted (a killed run may be resumed in it)."""
    import mlflow

    try:
        return mlflow.MlflowClient().get_run(run_id).info.lifecycle_stage == "active"
    except mlflow.exceptions.MlflowException:
        return False
