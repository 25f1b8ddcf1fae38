"""Bad input a user can give, beyond params (test_config): each gets one line, exit 2, earlier outputs intact.

The README's "When something is wrong" table lists these cases; each row names its test.
"""

import resource
import subprocess
import sys
import time

import pytest
import yaml
from conftest import REPO, merge

from invaders.config import ModelConfig, parse_params
from invaders.model import ModelFileError, build_q_network, save_network


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
    from invaders.agent import load_agent

    params = parse_params(yaml.safe_load((REPO / "params.yaml").read_text()))
    save_network(build_q_network(ModelConfig(), (84, 84), 4, 4), tmp_path / "four_actions.keras")
    with pytest.raises(ModelFileError, match=r"four_actions.keras: built for input \(4, 84, 84\) and 4 actions, but"
                                             r" these params need input \(4, 84, 84\) and 6 actions"):
        load_agent(tmp_path / "four_actions.keras", params, training=False)
    raw = merge(yaml.safe_load((REPO / "params.yaml").read_text()), {"agent": {"window_length": 3}})
    save_network(build_q_network(ModelConfig(), (84, 84), 4, 6), tmp_path / "window4.keras")
    with pytest.raises(ModelFileError, match=r"need input \(3, 84, 84\)"):
        load_agent(tmp_path / "window4.keras", parse_params(raw), training=False)


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
