"""The outbox against a real MLflow tracking server in a process of its own (SQLite store): the server
goes away mid-run, the records wait (in memory, then in the spill file), and once it is back on the
same port and store they arrive, each metric exactly once and in order."""

import time

import mlflow
import pytest
from conftest import BIN, free_port, serving

from invaders.tracking.outbox import Outbox

pytestmark = pytest.mark.server


def wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_records_wait_for_the_server_and_arrive_once_in_order(tmp_path, monkeypatch):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
              "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
              "--artifacts-destination", str(tmp_path / "artifacts")]
    # Fail fast while the server is away: the outbox does its own retrying.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    previous_uri = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(url)
    lines: list[str] = []
    outbox = None
    t0 = 1_700_000_000_000
    try:
        with serving(server, tmp_path, url, tmp_path / "server-1.log"):
            client = mlflow.MlflowClient(url)
            run_id = client.create_run(client.create_experiment("outbox")).info.run_id
            outbox = Outbox(run_id, tmp_path / "spill.jsonl", memory_limit=5, echo=lines.append)
            outbox.log_params({"lr": 0.001, "gamma": 0.99})
            outbox.set_tags({"phase": "before"})
            for step in range(10):
                outbox.log_metrics({"loss": 1.0 / (step + 1), "reward": step}, step, timestamp=t0 + step)
            wait_for(lambda: outbox.pending == 0, 60, "the records sent while the server is up")
        # The server is gone (its process group stopped): training goes on, the records wait.
        for step in range(10, 30):
            outbox.log_metrics({"loss": 1.0 / (step + 1), "reward": step}, step, timestamp=t0 + step)
        outbox.set_tags({"phase": "after"})
        wait_for(lambda: any("does not answer" in line for line in lines), 60, "the outbox to notice the outage")
        assert outbox.pending == 21, outbox.pending  # nothing lost, nothing sent
        assert (tmp_path / "spill.jsonl").is_file()  # over the memory limit: spilled
        with serving(server, tmp_path, url, tmp_path / "server-2.log"):
            wait_for(lambda: outbox.pending == 0, 120, "the kept records to be sent after the outage")
            assert outbox.close(wait=30) == []
            outbox = None
            run = client.get_run(run_id)
            for key in ("loss", "reward"):
                history = client.get_metric_history(run_id, key)
                assert [m.step for m in history] == list(range(30)), (key, [m.step for m in history])
                assert [m.timestamp for m in history] == [t0 + s for s in range(30)]
            assert [m.value for m in client.get_metric_history(run_id, "reward")] == list(map(float, range(30)))
            assert run.data.params == {"lr": "0.001", "gamma": "0.99"}
            assert run.data.tags["phase"] == "after"
        assert any("is back" in line for line in lines), lines
        assert not (tmp_path / "spill.jsonl").exists()
    finally:
        if outbox is not None:
            outbox.close(wait=0)
        mlflow.set_tracking_uri(previous_uri)
