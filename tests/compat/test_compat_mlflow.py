"""invaders.compat.mlflow: the MLflow internals it wraps are there, and another MLflow is refused."""

import importlib.metadata

import pytest

from invaders.compat import mlflow as compat

pytestmark = pytest.mark.unit


def test_the_private_apis_it_wraps_exist():
    from mlflow.server import auth
    from mlflow.store.db import utils

    for module, name in ((auth, "_get_request_param"), (auth, "_get_registered_model_permission"),
                         (utils, "_is_empty_database"), (utils, "_get_schema_version"),
                         (utils, "_get_latest_schema_revision"), (utils, "_upgrade_db")):
        assert callable(getattr(module, name, None)), f"{module.__name__}.{name}"
    monitor = compat.SystemMetrics.__mro__[1]("run-id")  # MLflow's monitor: the attributes our loop uses
    for name in ("_shutdown_event", "sampling_interval", "_metrics_prefix", "_logging_step", "monitors"):
        assert hasattr(monitor, name), name
    assert callable(monitor.collect_metrics) and callable(monitor.aggregate_metrics)


def test_another_mlflow_release_is_refused(monkeypatch):
    monkeypatch.setattr(compat, "version", lambda name: "3.18.0")
    with pytest.raises(ImportError, match=r"written for mlflow 3\.17\.\*, found 3\.18\.0"):
        compat._check_version()
    assert importlib.metadata.version("mlflow").startswith(compat.WRITTEN_FOR)
