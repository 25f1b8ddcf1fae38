"""End to end: the real `dvc repro` in a real git repo on tiny params, then every output and the MLflow store."""

import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from browser import chromium_page, screenshot
from conftest import REPO, TINY, free_port, make_project, merge, ran_stages, run, serving, tool_env

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """The default params with tiny budgets, after one `dvc repro`."""
    root = tmp_path_factory.mktemp("project")
    params = merge(yaml.safe_load((REPO / "params.yaml").read_text()), TINY)
    first = make_project(root, params)
    assert ran_stages(first.stdout) == ["baseline", "build", "train", "evaluate", "promote"]
    return root


def test_outputs_have_their_schemas(project):
    data = project / "data"
    base = json.loads((data / "baseline" / "metrics.json").read_text())
    keys = {"mean_reward", "std_reward", "min_reward", "max_reward", "episodes"}
    assert set(base) == keys and base["episodes"] == 2
    assert base["min_reward"] <= base["mean_reward"] <= base["max_reward"]
    assert (data / "baseline" / "episodes.csv").read_text().splitlines()[0] == "episode,reward,length"

    summary = json.loads((data / "model" / "summary.json").read_text())
    assert summary["params"] == 1_687_719 and summary["n_actions"] == 6
    assert sum(layer["params"] for layer in summary["layers"]) == summary["params"]
    assert "Total params: 1687719" in (data / "model" / "summary.txt").read_text().replace(",", "")

    history = (data / "train" / "history.csv").read_text().splitlines()
    assert history[0] == "episode,step,reward,length,epsilon,loss,mean_q,wall_time_seconds"
    rows = [dict(zip(history[0].split(","), line.split(","))) for line in history[1:]]
    assert len(rows) >= 1 and all(int(r["length"]) <= 150 for r in rows)
    steps = [int(r["step"]) for r in rows]
    assert steps == sorted(steps) and steps[-1] <= 300
    assert float(rows[-1]["epsilon"]) < 1.0 and float(rows[-1]["loss"]) >= 0.0  # trained past warmup

    ev = json.loads((data / "eval" / "metrics.json").read_text())
    assert set(ev) == keys | {"baseline_mean_reward", "improvement"}
    assert ev["baseline_mean_reward"] == base["mean_reward"]
    assert ev["improvement"] == pytest.approx(ev["mean_reward"] / base["mean_reward"])
    video = data / "eval" / "video" / "episode.mp4"
    assert video.stat().st_size > 1000 and video.read_bytes()[4:8] == b"ftyp"
    assert not list(data.rglob(".*tmp*"))  # no temporary files left behind


@pytest.mark.server
@pytest.mark.browser
def test_the_mlflow_ui_shows_the_scores_the_description_and_the_video(project, tmp_path):
    """In a real browser, as a new user after `make mlflow-ui` (`invaders ui`): its link opens the experiment
    on the training runs; sorted by score, one column holds the baseline's and the agent's; the agent's
    run page has its description, and the video is among its artifacts. Screenshots go to tmp_path (and to
    $INVADERS_SCREENSHOTS: `make ui-screenshots` makes the README's)."""
    from playwright.sync_api import expect

    port = free_port()
    log = tmp_path / "ui.log"
    with serving(["invaders", "ui", "--port", str(port)], project, f"http://127.0.0.1:{port}", log), \
            chromium_page(tmp_path) as page:
        link = log.read_text().splitlines()[0].removeprefix("MLflow UI: ")
        assert link.startswith(f"http://127.0.0.1:{port}/#/experiments/"), link
        page.goto(link)
        for name in ("random-baseline", "dqn-nature"):
            expect(page.get_by_role("link", name=name)).to_be_visible()
        expect(page).to_have_url(re.compile(r"#/experiments/\d+/runs\?"))  # not the GenAI overview

        page.get_by_role("button", name="Close").click()  # the assistant's panel
        page.get_by_role("button", name=re.compile("^Sort")).click()
        page.get_by_test_id("sort-select-mean_reward").click()  # which also shows the column
        page.get_by_role("button", name="Columns").click()
        page.get_by_role("dialog").get_by_text("Dataset", exact=True).click()  # empty: room for the scores
        page.keyboard.press("Escape")
        expect(page.locator("[role=columnheader][col-id='metrics.`mean_reward`']")).to_be_visible()
        cells = page.locator("[role=gridcell]").evaluate_all(
            "cells => cells.map(c => [c.parentElement.getAttribute('row-index'), c.getAttribute('col-id'), c.innerText])")
        rows: dict[str, dict[str, str]] = {}
        for row, column, text in cells:
            rows.setdefault(row, {})[column] = text
        shown = {r["attributes.`Run Name`"].split()[-1]: float(r["metrics.`mean_reward`"]) for r in rows.values()}
        scores = {name: json.loads((project / "data" / stage / "metrics.json").read_text())["mean_reward"]
                  for name, stage in (("random-baseline", "baseline"), ("dqn-nature", "eval"))}
        assert shown == pytest.approx(scores, rel=1e-3)
        screenshot(page, tmp_path, "mlflow-runs.png")

        page.get_by_role("link", name="dqn-nature").click()
        description = page.get_by_text(re.compile(r"^Score \d"))
        expect(description).to_be_visible()
        expect(page.get_by_text(re.compile(r"^challenger, version 1 of invaders-dqn"))).to_be_visible()
        screenshot(page, tmp_path, "mlflow-run.png")

        page.get_by_role("tab", name="Artifacts").click()
        for folder in ("evaluation", "video"):
            page.get_by_text(folder, exact=True).click()
        page.get_by_text("episode.mp4", exact=True).click()
        expect(page.locator("video")).to_be_visible()  # the artifact viewer plays it


def test_the_best_validated_network_is_kept(project, monkeypatch):
    """Validation every 100 steps and at the end (300) on the validation stream; model.keras is the
    best round's network, last.keras the last one's, and metrics.json says which step it came from."""
    monkeypatch.chdir(project)
    import mlflow

    from invaders.rl.agent import build_agent
    from invaders.config import load_params
    from invaders.rl.play import play_agent
    from invaders.rl.episodes import score_summary
    from invaders.rl.model import load_network

    rows = (project / "data" / "train" / "validation.csv").read_text().splitlines()
    assert rows[0] == "step,mean_reward,std_reward,best"
    rounds = [dict(zip(rows[0].split(","), line.split(","))) for line in rows[1:]]
    assert [int(r["step"]) for r in rounds] == [100, 200, 300]
    scores = [float(r["mean_reward"]) for r in rounds]
    best = scores.index(max(scores))  # the first of ties
    assert [r["best"] == "True" for r in rounds] == [s > max(scores[:i], default=-1) for i, s in enumerate(scores)]
    summary = json.loads((project / "data" / "train" / "metrics.json").read_text())
    assert (summary["keep"], summary["selected_step"], summary["selected_val_mean_reward"]) == (
        "best", 100 * (best + 1), scores[best])

    # Replaying the validation protocol on the kept network gives the score it was selected with.
    params = load_params()
    agent = build_agent(load_network("data/train/model.keras"), params, training=False)
    replayed = score_summary(play_agent(agent, params.env, params.train.eval_episodes,
                                        params.stream_seed("validation"), params.evaluate.parallel_episodes))
    assert replayed["mean_reward"] == scores[best]
    same = (project / "data/train/model.keras").read_bytes() == (project / "data/train/last.keras").read_bytes()
    assert same == (best == 2)

    mlflow.set_tracking_uri("sqlite:///mlflow.db")
    run_id = json.loads(Path("data/train/mlflow_run.json").read_text())["run_id"]
    history = mlflow.MlflowClient().get_metric_history(run_id, "val_mean_reward")
    assert sorted((m.step, m.value) for m in history) == list(zip([100, 200, 300], scores))


def test_dvc_metrics_show_and_nothing_left_to_do(project):
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], project).stdout)
    metrics = {Path(k).as_posix(): v["data"] for k, v in shown[""]["data"].items()}
    ev = json.loads((project / "data" / "eval" / "metrics.json").read_text())
    assert metrics["data/eval/metrics.json"] == ev
    assert metrics["data/train/metrics.json"]["steps"] == 300
    assert ran_stages(run(["dvc", "repro"], project).stdout) == []
    assert "up to date" in run(["dvc", "status"], project).stdout
    plots = json.loads(run(["dvc", "plots", "show", "--json"], project).stdout)["data"]
    assert {"training_reward", "validation_score", "evaluation_vs_baseline"} <= set(plots)


def test_a_stage_that_fails_leaves_the_earlier_outputs(project):
    before = {p: p.read_bytes() for p in (project / "data" / "train").glob("*.*")}
    good = (project / "params.yaml").read_text()
    (project / "params.yaml").write_text(good.replace("steps: 300", "steps: -1"))
    result = run(["dvc", "repro"], project, check=False)
    (project / "params.yaml").write_text(good)
    assert result.returncode != 0
    assert "error: params.yaml: train.steps: Input should be greater than or equal to 1 (got -1)" in result.stderr
    assert {p: p.read_bytes() for p in (project / "data" / "train").glob("*.*")} == before
    assert "up to date" in run(["dvc", "status"], project).stdout


def test_logged_model_loads_and_agrees(project, monkeypatch):
    monkeypatch.chdir(project)
    import mlflow

    import invaders  # noqa: F401
    from invaders.rl.model import load_network

    mlflow.set_tracking_uri("sqlite:///mlflow.db")
    runs = mlflow.search_runs(experiment_names=["invaders"], output_format="list")
    by_stage = {r.data.tags["stage"]: r for r in runs}
    assert set(by_stage) == {"baseline", "train"} and len(runs) == 2
    train, base = by_stage["train"], by_stage["baseline"]
    assert train.info.run_id == json.loads(Path("data/train/mlflow_run.json").read_text())["run_id"]
    assert train.data.params["agent.learning_rate"] == "0.0001" and train.data.params["train.steps"] == "300"
    assert base.data.metrics["mean_reward"] == json.loads(Path("data/baseline/metrics.json").read_text())["mean_reward"]
    ev = json.loads(Path("data/eval/metrics.json").read_text())
    # One name per quantity: the agent's evaluation and the baseline under metrics.json's keys.
    assert {k: train.data.metrics[k] for k in ev} == ev
    assert set(base.data.metrics) == set(json.loads(Path("data/baseline/metrics.json").read_text()))
    assert train.data.tags["baseline_run_id"] == base.info.run_id

    client = mlflow.MlflowClient()
    rewards = client.get_metric_history(train.info.run_id, "episode_reward")
    assert rewards and all(m.step <= 300 for m in rewards)
    # Beside each game's score, the mean of the last 100 games' (all of them, in a run this short).
    games = sorted((m.step, m.value) for m in rewards)
    smoothed = sorted((m.step, m.value) for m in client.get_metric_history(train.info.run_id, "episode_reward_mean100"))
    assert smoothed == [(step, pytest.approx(np.mean([v for _, v in games[:i + 1]]))) for i, (step, _) in enumerate(games)]
    assert any(key.startswith("system/") for key in train.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(train.info.run_id, "evaluation")}
    assert {"evaluation/metrics.json", "evaluation/episodes.csv", "evaluation/video"} <= artifacts

    logged = mlflow.tensorflow.load_model(f"runs:/{train.info.run_id}/model")
    local = load_network("data/train/model.keras")
    x = np.random.default_rng(0).integers(0, 256, (4, 4, 84, 84), dtype=np.uint8)
    np.testing.assert_allclose(logged.predict_on_batch(x), local.predict_on_batch(x), rtol=1e-6)


def test_changing_one_param_reruns_only_what_depends_on_it(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["evaluate"]["episodes"] = 3
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run(["dvc", "repro"], project).stdout
    assert ran_stages(out) == ["evaluate", "promote"]  # re-running evaluate alone records a second evaluation
    assert json.loads((project / "data" / "eval" / "metrics.json").read_text())["episodes"] == 3
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    run_id = json.loads((project / "data" / "train" / "mlflow_run.json").read_text())["run_id"]
    client = mlflow.MlflowClient()
    assert client.get_run(run_id).data.tags["eval.count"] == "2"
    assert [m.step for m in client.get_metric_history(run_id, "episodes")] == [1, 2]

    params["baseline"]["episodes"] = 3
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert ran_stages(run(["dvc", "repro"], project).stdout) == ["baseline", "evaluate", "promote"]
    # The same trained agent stays one registered version; its record is the latest evaluation.
    versions = client.search_model_versions("name = 'invaders-dqn'")
    assert [(v.version, v.run_id) for v in versions] == [(1, run_id)]
    assert versions[0].tags["eval.episodes"] == "3"


def test_promote_registers_the_agent_and_records_the_decision(project, monkeypatch):
    """Tiny params play 2 episodes a side, fewer than promote.min_episodes: a challenger, and no champion."""
    decision = json.loads((project / "data" / "promote" / "decision.json").read_text())
    run_id = json.loads((project / "data" / "train" / "mlflow_run.json").read_text())["run_id"]
    assert decision["model_name"] == "invaders-dqn" and decision["run_id"] == run_id
    assert decision["alias"] == "challenger" and not decision["promote"] and not decision["beats_baseline"]
    assert decision["vs_champion"] is None and decision["vs_baseline"]["p_value"] is None
    assert decision["reason"].startswith("too few episodes to test against the baseline")
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], project).stdout)[""]["data"]
    assert {Path(k).as_posix() for k in shown} >= {"data/promote/decision.json"}

    monkeypatch.chdir(project)
    import mlflow

    from invaders.tracking.registry import recorded_rewards, version_by_alias

    mlflow.set_tracking_uri("sqlite:///mlflow.db")
    version = version_by_alias("invaders-dqn", "challenger")
    assert version is not None and str(version.version) == decision["version"] and version.run_id == run_id
    assert version_by_alias("invaders-dqn", "champion") is None
    assert version.tags["promote.decision"] == "challenger" and version.tags["promote.reason"] == decision["reason"]
    rewards = [float(line.split(",")[1]) for line in
               (project / "data" / "eval" / "episodes.csv").read_text().splitlines()[1:]]
    assert recorded_rewards(version) == rewards
    tags = mlflow.MlflowClient().get_run(run_id).data.tags
    assert tags["promote.decision"] == "challenger" and tags["promote.version"] == decision["version"]
    # The run's description (its MLflow note) says all that, and what the run differs in from the defaults.
    note = tags["mlflow.note.content"]
    ev = json.loads((project / "data" / "eval" / "metrics.json").read_text())
    assert note.startswith(f"- **Score {ev['mean_reward']:.1f}** ± {ev['std_reward']:.1f} over {ev['episodes']}"
                           f" evaluation episodes; the random baseline scores {ev['baseline_mean_reward']:.1f}")
    assert f"- **challenger**, version {decision['version']} of `invaders-dqn`: {decision['reason']}\n" in note
    assert "`train.steps=300`" in note and "agent.learning_rate" not in note  # only the params that differ
    assert "artifact `evaluation/video/episode.mp4`" in note and tags["mlflow.source.git.commit"][:12] in note


def test_play_command_scores_and_records(project):
    video = project / "play.mp4"
    out = run(["invaders", "play", "--model", "data/train/model.keras", "--episodes", "1", "--video", str(video)],
              project).stdout
    assert "episode 1: score" in out and video.stat().st_size > 1000
    bad = run(["invaders", "play", "--model", "nope.keras"], project, check=False)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1] == "error: nope.keras: no such model file"


def test_evaluate_command_takes_a_registry_uri_and_agrees_with_the_file(project):
    """The registered version is the file's network: same seed, same scores."""
    for name, model in [("file", "data/train/model.keras"), ("registry", "models:/invaders-dqn@challenger")]:
        out = run(["invaders", "evaluate", "--model", model, "--episodes", "2", "--out", f"check-{name}"], project)
        assert f"{model}: mean" in out.stdout and "over 2 episodes at epsilon 0.01" in out.stdout
    assert (project / "check-file" / "episodes.csv").read_text() == (project / "check-registry" / "episodes.csv").read_text()
    # With the params file's settings it replays the evaluate stage, even on one core: playing runs TF on
    # one thread, so scores do not depend on the machine's core count.
    subprocess.run(["invaders", "evaluate", "--model", "data/train/model.keras", "--out", "check-stage"], cwd=project,
                   env=tool_env(), check=True, capture_output=True, preexec_fn=lambda: os.sched_setaffinity(0, {0}))
    assert (project / "check-stage" / "episodes.csv").read_text() == (project / "data/eval/episodes.csv").read_text()
    missing = run(["invaders", "play", "--model", "models:/invaders-dqn@champion"], project, check=False)
    last = missing.stderr.strip().splitlines()[-1]
    assert missing.returncode == 2 and last.startswith("error: models:/invaders-dqn@champion: not found in the MLflow store")


def test_agent_train_and_promote_params_rerun_what_the_readme_says(project):
    """Last on this project: it retrains. agent.*, train.* and evaluate.parallel_episodes (validation plays that
    many at a time) re-run train, evaluate and promote; promote.* re-runs promote alone; agent.head the build too."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["promote"]["alpha"] = 0.01
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert ran_stages(run(["dvc", "repro"], project).stdout) == ["promote"]
    for section, key, value in (("agent", "n_step", 2), ("train", "eval_every", 150),
                                ("evaluate", "parallel_episodes", 4)):
        params[section][key] = value
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        assert ran_stages(run(["dvc", "repro"], project).stdout) == ["train", "evaluate", "promote"], key
    # The head is the network's: it rebuilds it, and training takes the new network.
    params["agent"]["head"] = "quantile"
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert ran_stages(run(["dvc", "repro"], project).stdout) == ["build", "train", "evaluate", "promote"]


def test_seed_preset_runs(tmp_path):
    """The article's setup (raw frames, its 34.8M-parameter net), shrunk to seconds."""
    preset = yaml.safe_load((REPO / "presets" / "seed.yaml").read_text())
    params = merge(preset, {
        "env": {"max_episode_steps": 60}, "baseline": {"episodes": 1}, "evaluate": {"episodes": 1, "video": False},
        "agent": {"memory_limit": 100, "warmup_steps": 40, "epsilon": {"anneal_steps": 60}},
        "train": {"steps": 60, "log_every": 30, "checkpoint_every": 30},
    })
    first = make_project(tmp_path, params)
    assert ran_stages(first.stdout) == ["baseline", "build", "train", "evaluate", "promote"]
    summary = json.loads((tmp_path / "data" / "model" / "summary.json").read_text())
    assert summary["params"] == 34_812_326 + 257 and summary["input_shape"] == [None, 3, 210, 160, 3]
    ev = json.loads((tmp_path / "data" / "eval" / "metrics.json").read_text())
    assert ev["episodes"] == 1 and not (tmp_path / "data" / "eval" / "video" / "episode.mp4").exists()
