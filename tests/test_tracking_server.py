"""The pipeline against a real MLflow tracking server, as the retrain workflow runs it: runs, metrics, artifacts
and the registry all go to the server (artifacts proxied to its store), nothing to a local store."""

import json

import numpy as np
import pytest
import yaml
from conftest import BIN, REPO, TINY, free_port, make_project, merge, ran_stages, run, serving


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    store = tmp_path_factory.mktemp("server")
    port = free_port()
    with serving([str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{store / 'server.db'}",
                  "--artifacts-destination", str(store / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
                  "--workers", "1"], store, f"http://127.0.0.1:{port}", store / "server.log"):
        yield f"http://127.0.0.1:{port}", store


def test_the_pipeline_records_everything_on_the_server(server, tmp_path):
    uri, store = server
    make_project(tmp_path, merge(yaml.safe_load((REPO / "params.yaml").read_text()), TINY), repro=False)
    out = run(["dvc", "repro"], tmp_path, MLFLOW_TRACKING_URI=uri)
    assert ran_stages(out.stdout) == ["baseline", "build", "train", "evaluate", "promote"]
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()

    import mlflow

    from invaders.model import load_network

    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("invaders")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    # `invaders ui` (make mlflow-ui) points at the server's own UI instead of serving one.
    shown = run(["invaders", "ui"], tmp_path, MLFLOW_TRACKING_URI=uri).stdout
    assert shown == f"MLflow UI: {uri}/#/experiments/{experiment.experiment_id}?workflowType=machine_learning\n"
    runs = {r.data.tags["stage"]: r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == {"baseline", "train"}
    train = runs["train"]
    assert train.info.run_id == json.loads((tmp_path / "data/train/mlflow_run.json").read_text())["run_id"]
    assert train.info.status == "FINISHED" and train.data.params["train.steps"] == "300"
    assert [m.step for m in client.get_metric_history(train.info.run_id, "mean_reward")] == [1]
    assert len(client.get_metric_history(train.info.run_id, "episode_reward")) >= 1
    # The evaluate stage read the train stage's output hashes back through the server to add its own.
    listing = client.download_artifacts(train.info.run_id, "outputs.sha256", str(tmp_path))
    assert {"data/train/model.keras", "data/eval/episodes.csv"} <= {
        line.split("  ", 1)[1] for line in open(listing).read().splitlines()}
    assert train.data.tags["mlflow.note.content"].startswith("- **Score")
    # Artifacts went through the server into its artifact store.
    assert list((store / "artifacts").rglob("history.csv")) and list((store / "artifacts").rglob("episode.mp4"))

    decision = json.loads((tmp_path / "data/promote/decision.json").read_text())
    version = client.get_model_version_by_alias("invaders-dqn", decision["alias"])
    assert version.version == decision["version"] and version.run_id == train.info.run_id
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)  # models:/ URIs resolve against the global one
    try:
        registered = mlflow.tensorflow.load_model(f"models:/invaders-dqn@{decision['alias']}")
    finally:
        mlflow.set_tracking_uri(previous)
    x = np.random.default_rng(0).integers(0, 256, (4, 4, 84, 84), dtype=np.uint8)
    local = load_network(tmp_path / "data/train/model.keras")
    np.testing.assert_allclose(registered.predict_on_batch(x), local.predict_on_batch(x), rtol=1e-6)
