"""The MLflow Model Registry in a real local SQLite store: round trip by alias, and the champion/challenger flow."""

import numpy as np
import pytest

import invaders  # noqa: F401
from invaders.config import ModelConfig, PromoteConfig
from invaders.rl.episodes import EPISODE_FIELDS
from invaders.files import write_csv
from invaders.rl.model import ModelFileError, build_q_network, load_network, save_network
from invaders.tracking.store import TrackingError, connect

pytestmark = pytest.mark.e2e

BASELINE = [150.0, 120.0, 180.0, 95.0, 210.0, 140.0, 160.0, 130.0]
STRONG = [320.0, 290.0, 410.0, 350.0, 280.0, 375.0, 330.0, 300.0]
MIDDLING = [260.0, 240.0, 300.0, 275.0, 230.0, 290.0, 250.0, 265.0]  # beats the baseline, not STRONG
STRONGER = [620.0, 580.0, 700.0, 655.0, 590.0, 610.0, 640.0, 675.0]


@pytest.fixture
def store(tmp_path, monkeypatch):
    """An empty SQLite tracking store and registry in a fresh directory, selected as the stages select it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    connect("registry-tests")
    return tmp_path


def log_run(model_file, name="agent") -> str:
    """A training run that logs the network as the train stage does; returns its id."""
    import mlflow

    with mlflow.start_run(run_name=name) as run:
        # pip_requirements given: MLflow would otherwise infer them in a subprocess, which is slow.
        mlflow.tensorflow.log_model(load_network(model_file), name="model", pip_requirements=["tensorflow"])
    return run.info.run_id


def episodes(path, rewards):
    write_csv(path, [{"episode": i + 1, "reward": r, "length": 100} for i, r in enumerate(rewards)], EPISODE_FIELDS)
    return path


def test_round_trip_by_alias_gives_the_files_q_values(store):
    import mlflow

    from invaders.tracking.registry import model_file

    def load_model(spec):
        with model_file(spec) as path:
            return load_network(path)

    net = build_q_network(ModelConfig(), (84, 84), 4, 6)
    save_network(net, store / "model.keras")
    run_id = log_run(store / "model.keras")
    version = mlflow.register_model(f"runs:/{run_id}/model", "round-trip")
    mlflow.MlflowClient().set_registered_model_alias("round-trip", "champion", version.version)

    x = np.random.default_rng(0).integers(0, 256, (3, 4, 84, 84), dtype=np.uint8)
    expected = load_network(store / "model.keras").predict_on_batch(x)
    for uri in ("models:/round-trip@champion", f"models:/round-trip/{version.version}", f"runs:/{run_id}/model"):
        np.testing.assert_allclose(load_model(uri).predict_on_batch(x), expected, rtol=1e-6)
    assert load_model(str(store / "model.keras")).count_params() == net.count_params()

    for bad in ("models:/round-trip@nope", "models:/no-such-model@champion"):
        with pytest.raises(ModelFileError, match=f"^{bad}: not found in the MLflow store 'sqlite:///{store}/mlflow.db'"):
            load_model(bad)


def test_champion_moves_only_to_a_significantly_better_agent(store):
    import mlflow

    from invaders.tracking.registry import promote, recorded_rewards, version_by_alias

    net = build_q_network(ModelConfig(dueling="none"), (84, 84), 1, 6)
    save_network(net, store / "model.keras")
    cfg = PromoteConfig(model_name="flow", alpha=0.05, min_episodes=5)
    baseline = episodes(store / "baseline.csv", BASELINE)
    client = mlflow.MlflowClient()

    def candidate(rewards):
        run_id = log_run(store / "model.keras")
        return run_id, episodes(store / f"{run_id}.csv", rewards)

    # No champion yet: it has to beat the random baseline.
    first_run, first_csv = candidate(STRONG)
    first = promote(cfg, first_run, first_csv, baseline)
    assert (first["version"], first["alias"], first["previous_champion"]) == ("1", "champion", None)
    assert first["vs_champion"] is None and first["vs_baseline"]["p_value"] < 0.05
    assert recorded_rewards(version_by_alias("flow", "champion")) == STRONG

    # Better than the baseline but not than the champion: a challenger; compared with the champion's record.
    second_run, second_csv = candidate(MIDDLING)
    second = promote(cfg, second_run, second_csv, baseline)
    assert (second["version"], second["alias"], second["previous_champion"]) == ("2", "challenger", "1")
    assert second["beats_baseline"] and not second["promote"]
    assert second["vs_champion"]["rival_mean"] == pytest.approx(np.mean(STRONG))
    assert version_by_alias("flow", "champion").version == 1 and version_by_alias("flow", "challenger").version == 2

    # Clearly better: the alias moves.
    third_run, third_csv = candidate(STRONGER)
    third = promote(cfg, third_run, third_csv, baseline)
    assert (third["version"], third["alias"], third["previous_champion"]) == ("3", "champion", "1")
    assert third["vs_champion"]["p_value"] < 1e-6
    assert version_by_alias("flow", "champion").version == 3 and version_by_alias("flow", "challenger").version == 2
    v3 = client.get_model_version("flow", "3")
    assert v3.tags["promote.decision"] == "champion" and v3.tags["promote.previous_champion"] == "1"
    assert v3.tags["eval.episodes"] == "8" and float(v3.tags["eval.mean_reward"]) == pytest.approx(np.mean(STRONGER))
    run_tags = client.get_run(third_run).data.tags
    assert run_tags["promote.decision"] == "champion" and run_tags["promote.version"] == "3"

    # Promoting the same training run again reuses its version; the champion is not its own rival.
    again = promote(cfg, third_run, third_csv, baseline)
    assert (again["version"], again["alias"], again["previous_champion"]) == ("3", "champion", None)
    assert len(client.search_model_versions("name = 'flow'")) == 3

    # A champion alias set by hand on a version with no recorded evaluation cannot be compared with.
    client.set_registered_model_alias("flow", "champion", "2")
    client.delete_model_version_tag("flow", "2", "eval.rewards_artifact")
    fourth_run, fourth_csv = candidate(STRONGER)
    with pytest.raises(TrackingError, match="^model flow version 2 has no recorded evaluation"):
        promote(cfg, fourth_run, fourth_csv, baseline)
