"""Bad input a user can give, beyond params (test_config): each gets one line, exit 2, earlier outputs intact.

The README's "When something is wrong" table lists these cases; each row names its test.
"""

import os
import re
import resource
import subprocess
import sys
import time

import pytest
import yaml
from conftest import REPO, TINY, free_port, merge, serving

from invaders.config import ModelConfig, parse_params
from invaders.rl.model import ModelFileError, build_q_network, save_network

pytestmark = pytest.mark.e2e


def stage(name: str, cwd, env: dict | None = None, limit_bytes: int | None = None) -> subprocess.CompletedProcess:
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run([sys.executable, str(REPO / "pipeline" / f"{name}.py")], cwd=cwd, env=env,
                          preexec_fn=limit if limit_bytes else None, capture_output=True, text=True, timeout=300)


def error_line(result: subprocess.CompletedProcess) -> str:
    """The last stderr line (TensorFlow may print start-up notices before it), checked to be the only error."""
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    return result.stderr.strip().splitlines()[-1]


def test_a_full_disk_leaves_the_previous_output_and_no_partial_file(tmp_path):
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    model = tmp_path / "data" / "model" / "model.keras"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"the previous model")
    result = stage("build", tmp_path, limit_bytes=1_000_000)  # the network takes 6.8 MB
    assert error_line(result) == ("error: data/model/model.keras: could not be written (File too large);"
                                  " its previous version is unchanged")
    assert model.read_bytes() == b"the previous model"
    assert sorted(p.name for p in model.parent.iterdir()) == ["model.keras"]  # no temporary file left


@pytest.fixture(scope="module")
def store_server(tmp_path_factory):
    """A tracking server in a process of its own (`invaders ui`), so that a stage under a file-size
    limit writes nothing but its outputs (its SQLite store would otherwise hit the limit first)."""
    root = tmp_path_factory.mktemp("store")
    (root / "params.yaml").write_text((REPO / "params.yaml").read_text())
    port = free_port()
    with serving(["invaders", "ui", "--port", str(port)], root, f"http://127.0.0.1:{port}", root / "ui.log"):
        yield f"http://127.0.0.1:{port}"


def full_disk_project(tmp_path, overrides: dict, inputs: dict[str, bytes], previous: dict[str, bytes]) -> dict:
    """A directory with tiny params, the stage's inputs and earlier outputs; returns every file's bytes."""
    params = merge(merge(yaml.safe_load((REPO / "params.yaml").read_text()), TINY), overrides)
    tmp_path.mkdir()
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    for path, content in {**inputs, **previous}.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(content)
    return {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}


def network_bytes(tmp_path) -> bytes:
    save_network(build_q_network(ModelConfig(), (84, 84), 4, 6), tmp_path / "net.keras")
    return (tmp_path / "net.keras").read_bytes()


def evaluate_inputs(tmp_path, store: str) -> dict[str, bytes]:
    import mlflow

    client = mlflow.MlflowClient(store)
    experiment = client.get_experiment_by_name("invaders").experiment_id
    train, baseline = (client.create_run(experiment).info.run_id for _ in range(2))
    return {"data/train/model.keras": network_bytes(tmp_path),
            "data/train/mlflow_run.json": f'{{"run_id": "{train}"}}'.encode(),
            "data/baseline/mlflow_run.json": f'{{"run_id": "{baseline}"}}'.encode(),
            "data/baseline/metrics.json": b'{"mean_reward": 1.0}'}


@pytest.mark.server
@pytest.mark.parametrize("output, limit, overrides", [
    ("data/eval/video/episode.mp4", 4_000, {}),  # a short game's video is tens of kB
    ("data/eval/episodes.csv", 30, {"evaluate": {"video": False}}),  # header and two rows: about 50 bytes
])
def test_a_full_disk_while_evaluating_leaves_the_previous_video_and_csv(tmp_path, store_server, output, limit,
                                                                        overrides):
    before = full_disk_project(tmp_path / "p", overrides, evaluate_inputs(tmp_path, store_server), {
        "data/eval/video/episode.mp4": b"the previous video", "data/eval/episodes.csv": b"the previous csv"})
    result = stage("evaluate", tmp_path / "p", env={**os.environ, "MLFLOW_TRACKING_URI": store_server},
                   limit_bytes=limit)
    assert re.fullmatch(rf"error: {output}: could not be written \((.*: )?File too large\); its previous version"
                        " is unchanged", error_line(result)), error_line(result)
    after = {p: p.read_bytes() for p in (tmp_path / "p").rglob("*") if p.is_file()}
    assert after == before  # the previous outputs, and no temporary file


@pytest.mark.server
def test_a_full_disk_while_checkpointing_stops_training_and_leaves_no_partial_checkpoint(tmp_path, store_server):
    """The checkpoint (networks, optimizer, replay memory: tens of MB) is the first file over 10 MB."""
    before = full_disk_project(tmp_path / "p", {}, {"data/model/model.keras": network_bytes(tmp_path)},
                               {"data/train/model.keras": b"the previous model"})
    result = stage("train", tmp_path / "p", env={**os.environ, "MLFLOW_TRACKING_URI": store_server},
                   limit_bytes=10_000_000)
    assert error_line(result) == ("error: data/train/checkpoints/step-000000100.ckpt: could not be written (File too"
                                  " large); its previous version is unchanged")
    after = {p: p.read_bytes() for p in (tmp_path / "p").rglob("*") if p.is_file()}
    assert after == before  # no checkpoint, partial or whole, and the previous model


# Inputs every stage checks before it connects to MLflow (their content is never read that far).
INPUTS = {"data/model/model.keras": "", "data/train/model.keras": "", "data/train/mlflow_run.json": '{"run_id": "r"}',
          "data/baseline/mlflow_run.json": '{"run_id": "b"}', "data/baseline/metrics.json": '{"mean_reward": 1.0}',
          "data/eval/episodes.csv": "", "data/baseline/episodes.csv": ""}


@pytest.mark.parametrize("name, uri, says", [
    ("baseline", "http://127.0.0.1:9", "is not usable"),  # nothing listens there
    ("baseline", "nonsense://somewhere", "is not usable"),  # no such store type
    ("train", "http://127.0.0.1:9", "is not usable"),
    ("evaluate", "http://127.0.0.1:9", "is not usable"),
    ("promote", "http://127.0.0.1:9", "is not usable"),
])
def test_an_unusable_tracking_uri_fails_in_seconds_naming_it(tmp_path, name, uri, says):
    """Before any work, and in seconds: MLflow's own retries would take minutes. The bound is generous
    (a loaded 2-core machine needs about 5 s to import MLflow); a hang or retry loop breaks it."""
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    for path, content in INPUTS.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(content)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    started = time.monotonic()
    result = stage(name, tmp_path, env={"PATH": "/usr/bin:/bin", "MLFLOW_TRACKING_URI": uri})
    assert time.monotonic() - started < 30
    assert error_line(result).startswith(f"error: MLflow tracking URI '{uri}' {says}")
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before  # nothing written


def test_a_network_for_another_game_or_observation_is_refused(tmp_path):
    from invaders.rl.agent import load_agent

    params = parse_params(yaml.safe_load((REPO / "params.yaml").read_text()))
    save_network(build_q_network(ModelConfig(), (84, 84), 4, 4), tmp_path / "four_actions.keras")
    with pytest.raises(ModelFileError, match=r"four_actions.keras: built for input \(4, 84, 84\) and 4 actions, but"
                                             r" these params need input \(4, 84, 84\) and 6 actions"):
        load_agent(tmp_path / "four_actions.keras", params, training=False)
    raw = merge(yaml.safe_load((REPO / "params.yaml").read_text()), {"agent": {"window_length": 3}})
    save_network(build_q_network(ModelConfig(), (84, 84), 4, 6), tmp_path / "window4.keras")
    with pytest.raises(ModelFileError, match=r"need input \(3, 84, 84\)"):
        load_agent(tmp_path / "window4.keras", parse_params(raw), training=False)


def test_training_refuses_a_network_whose_head_the_params_do_not_ask_for(tmp_path):
    from invaders.rl.agent import load_agent

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    quantile = parse_params(merge(raw, {"agent": {"head": "quantile", "quantiles": 16}}))
    save_network(build_q_network(ModelConfig(), (84, 84), 4, 6), tmp_path / "scalar.keras")
    with pytest.raises(ModelFileError, match=r"^\S*scalar.keras: built with a scalar head, but agent.head and"
                                             r" agent.quantiles ask for a quantile head of 16 quantiles; rebuild it"):
        load_agent(tmp_path / "scalar.keras", quantile, training=True)
    save_network(build_q_network(ModelConfig(), (84, 84), 4, 6, 8), tmp_path / "q8.keras")
    with pytest.raises(ModelFileError, match="built with a quantile head of 8 quantiles, but .* of 16 quantiles"):
        load_agent(tmp_path / "q8.keras", quantile, training=True)
    with pytest.raises(ModelFileError, match="built with a quantile head of 8 quantiles, but .* a scalar head"):
        load_agent(tmp_path / "q8.keras", parse_params(raw), training=True)
    load_agent(tmp_path / "q8.keras", parse_params(raw), training=False)  # playing needs only its Q-values


def test_play_refuses_a_network_for_other_frames_in_one_line(tmp_path):
    save_network(build_q_network(ModelConfig(), (84, 84), 4, 6), tmp_path / "nature.keras")
    preset = tmp_path / "seed.yaml"
    preset.write_text((REPO / "presets" / "seed.yaml").read_text())
    result = subprocess.run([sys.executable, "-m", "invaders.cli", "play", "--model", "nature.keras",
                             "--params", "seed.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    line = error_line(result)
    assert line.startswith("error: nature.keras: ") and "need input (4, 210, 160, 3)" in line, line


@pytest.mark.parametrize("command, option, value, says", [
    ("play", "--epsilon", "1.5", "--epsilon: must be between 0 and 1 (got 1.5)"),
    ("evaluate", "--epsilon", "-0.1", "--epsilon: must be between 0 and 1 (got -0.1)"),
    ("play", "--episodes", "0", "--episodes: must be at least 1 (got 0)"),
    ("evaluate", "--episodes", "-3", "--episodes: must be at least 1 (got -3)"),
])
def test_play_and_evaluate_refuse_bad_options_before_any_work(tmp_path, command, option, value, says):
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    result = subprocess.run([sys.executable, "-m", "invaders.cli", command, "--model", "missing.keras", option, value,
                             "--out" if command == "evaluate" else "--video", "out"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert error_line(result) == f"error: {says}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # nothing written


@pytest.mark.server
def test_evaluate_refuses_runs_its_store_does_not_have(tmp_path, store_server):
    """The inputs name training and baseline runs of another store (MLFLOW_TRACKING_URI changed since)."""
    inputs = {**evaluate_inputs(tmp_path, store_server), "data/train/mlflow_run.json": b'{"run_id": "gone"}'}
    before = full_disk_project(tmp_path / "p", {}, inputs, {})
    result = stage("evaluate", tmp_path / "p", env={**os.environ, "MLFLOW_TRACKING_URI": store_server})
    assert error_line(result) == (f"error: data/train/mlflow_run.json: run gone is not in the MLflow store"
                                  f" '{store_server}' (was the store changed since?); rerun the pipeline: dvc repro -f")
    assert {p: p.read_bytes() for p in (tmp_path / "p").rglob("*") if p.is_file()} == before


def test_a_sqlite_file_that_is_not_a_store_is_one_line(tmp_path):
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    (tmp_path / "notes.db").write_text("not a database")
    uri = f"sqlite:///{tmp_path / 'notes.db'}"
    result = stage("baseline", tmp_path, env={**os.environ, "MLFLOW_TRACKING_URI": uri})
    assert error_line(result) == (f"error: MLflow tracking URI '{uri}' is not usable: (sqlite3.DatabaseError) file is"
                                  " not a database")
    assert (tmp_path / "notes.db").read_text() == "not a database"
    assert not (tmp_path / "data").exists()


FAILING = """
from invaders.errors import exit_on_user_error

@exit_on_user_error
def main():
    return {}["missing"]

main()
"""


def test_an_unexpected_error_is_one_line_saying_what_it_is(tmp_path):
    """A bug or a case nobody foresaw is not passed off as a user's mistake, and not a traceback either."""
    (tmp_path / "failing.py").write_text(FAILING)
    result = subprocess.run([sys.executable, "failing.py"], cwd=tmp_path, capture_output=True, text=True)
    assert error_line(result) == (f"error: unexpected KeyError: 'missing' (at {tmp_path.name}/failing.py:6);"
                                  " INVADERS_TRACEBACK=1 shows the traceback")
    assert len(result.stderr.strip().splitlines()) == 1
    shown = subprocess.run([sys.executable, "failing.py"], cwd=tmp_path, capture_output=True, text=True,
                           env={**os.environ, "INVADERS_TRACEBACK": "1"})
    assert shown.returncode == 1 and "Traceback" in shown.stderr and "KeyError: 'missing'" in shown.stderr
