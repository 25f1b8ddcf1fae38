"""MLflow 3.17: the private APIs the project relies on, each here and only here.

- The auth app's request helpers (`_get_request_param`, `_get_registered_model_permission`), which
  the team server's `champion` rule calls inside a Flask request.
- The database helpers `mlflow db upgrade` uses (`_is_empty_database`, `_get_schema_version`,
  `_get_latest_schema_revision`, `_upgrade_db`), which the team server runs before it starts.
- `SystemMetricsMonitor`'s sampling loop, which `SystemMetrics` replaces: MLflow's own asks the server
  for the run before every sample and stops for good when it does not answer.
"""

from __future__ import annotations

from importlib.metadata import version

from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

WRITTEN_FOR = "3.17."  # the release series these internals were read in


def _check_version() -> None:
    found = version("mlflow")
    if not found.startswith(WRITTEN_FOR):
        raise ImportError(f"invaders.compat.mlflow was written for mlflow {WRITTEN_FOR}*, found {found}: check the"
                          " private APIs listed in its docstring, then widen the range")


_check_version()


def request_param(name: str) -> str:
    """A parameter of the current Flask request to the auth app (query string or JSON body)."""
    from mlflow.server import auth

    return auth._get_request_param(name)


def can_manage_registered_model(name: str) -> bool:
    """Whether the current request's user has MANAGE on the registered model `name`."""
    from mlflow.server import auth

    return auth._get_registered_model_permission(name).can_manage


def upgrade_schema(engine, on_upgrade) -> None:
    """Upgrade a non-empty tracking database to this MLflow's schema, calling `on_upgrade(current, head)`
    first if it is older; an empty one is left to the server, which creates its tables."""
    from mlflow.store.db import utils

    if utils._is_empty_database(engine):
        return
    current, head = utils._get_schema_version(engine), utils._get_latest_schema_revision()
    if current != head:
        on_upgrade(current, head)
        utils._upgrade_db(engine)


class SystemMetrics(SystemMetricsMonitor):
    """MLflow's system metrics (CPU, memory, disk, network) handed to `sink.log_metrics(metrics, step)`
    (the tracking outbox) instead of sent by MLflow's own loop, which asks the server for the run
    before every sample and stops for good when it does not answer."""

    def __init__(self, sink, resume: bool):
        super().__init__(sink.run_id, resume_logging=resume)
        self.sink = sink

    def monitor(self) -> None:
        while not self._shutdown_event.is_set():
            self.collect_metrics()
            if self._shutdown_event.wait(self.sampling_interval):
                return
            self.publish_metrics(self.aggregate_metrics())

    def publish_metrics(self, metrics: dict) -> None:
        self.sink.log_metrics({f"{self._metrics_prefix}{k}": v for k, v in metrics.items()}, self._logging_step)
        self._logging_step += 1
        for monitor in self.monitors:
            monitor.clear_metrics()
