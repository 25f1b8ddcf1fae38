import pytest

pytestmark = pytest.mark.unit


def test_the_experiment_is_marked_as_model_training_new_or_existing(tmp_path, monkeypatch):
    """A new experiment is created with MLflow's kind tag; an existing one without it gets it from the first
    stage that connects; a kind someone chose stays."""
    import mlflow

    from invaders.tracking.store import connect

    monkeypatch.chdir(tmp_path)  # the default store, as a stage outside DVC selects it
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client.create_experiment("old")
    client.create_experiment("chosen", tags={"mlflow.experimentKind": "genai_development"})
    kinds = {name: client.get_experiment(connect(name)).tags.get("mlflow.experimentKind")
             for name in ("new", "old", "chosen")}
    assert kinds == {"new": "custom_model_development", "old": "custom_model_development",
                     "chosen": "genai_development"}
