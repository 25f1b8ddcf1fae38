"""scripts/retrain.sh end to end with a local directory as the DVC remote, its helpers, and the CI workflows."""

import json
import re
import subprocess
from pathlib import Path

import yaml
import pytest
from conftest import BIN, REPO, TINY, make_project, merge, ran_stages, run

from invaders.config import load_params

STAGES = ["baseline", "build", "train", "evaluate", "promote"]


@pytest.mark.e2e
def test_retrain_pushes_and_a_fresh_clone_pulls_with_nothing_left_to_do(tmp_path):
    """Tiny budgets: 2 episodes a side, fewer than promote.min_episodes, so the gate fails (exit 1) every time."""
    origin, clone, remote = tmp_path / "origin", tmp_path / "clone", tmp_path / "remote"
    origin.mkdir()
    make_project(origin, merge(yaml.safe_load((REPO / "params.yaml").read_text()), TINY), repro=False)

    first = run(["bash", "scripts/retrain.sh", "--remote", str(remote), "--commit"], origin, check=False)
    assert first.returncode == 1, first.stderr[-3000:]
    assert ran_stages(first.stdout) == STAGES
    assert first.stderr.strip().splitlines()[-1] == "gate: the agent does not beat the random baseline"
    assert "## Retrain: invaders-dqn version 1 is **challenger**" in first.stdout
    assert "Gate: **failed**, the agent does not beat the random baseline." in first.stdout
    assert any(p.is_file() for p in remote.rglob("*"))  # `dvc push` filled the empty remote
    log = run(["git", "log", "--format=%s"], origin).stdout.splitlines()
    assert log[0].startswith("retrain: dvc.lock for ") and len(log) == 2
    assert run(["git", "status", "--porcelain"], origin).stdout == ""  # .dvc/config.local is git-ignored

    run(["git", "clone", "-q", str(origin), str(clone)], tmp_path)
    again = run(["bash", "scripts/retrain.sh", "--remote", str(remote), "--no-gate", "--diff", "HEAD~1"], clone)
    assert ran_stages(again.stdout) == []  # everything came from the remote
    assert "Data and pipelines are up to date." in run(["dvc", "status"], clone).stdout
    for out in ("train/model.keras", "promote/decision.json", "eval/episodes.csv"):
        assert (clone / "data" / out).read_bytes() == (origin / "data" / out).read_bytes()
    assert "### Params: this commit against HEAD~1\n\nNo changes." in again.stdout
    assert "### Metrics: this run against HEAD~1" in again.stdout
    assert "| data/promote/decision.json | vs_baseline.candidate_episodes |" in again.stdout
    assert not (clone / "mlflow.db").exists()  # no stage ran, so nothing was logged


@pytest.mark.unit
def test_bad_options_and_params_stop_before_any_work(tmp_path):
    bad = run(["bash", str(REPO / "scripts" / "retrain.sh"), "--steps", "many"], tmp_path, check=False)
    assert bad.returncode == 2 and bad.stderr.strip() == "error: --steps: must be a whole number (got 'many')"
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "seed.yaml").write_text((REPO / "presets" / "seed.yaml").read_text())
    too_short = run(["invaders", "params", "--steps", "500"], tmp_path, check=False)
    assert too_short.returncode == 2
    assert too_short.stderr.strip() == ("error: params.yaml with train.steps=500: train: eval_every (25000) must not"
                                        " exceed steps (500)")
    unknown = run(["invaders", "params", "--preset", "huge"], tmp_path, check=False)
    assert unknown.stderr.strip() == "error: --preset: no preset 'huge' (allowed: default, seed, or a params file)"
    assert (tmp_path / "params.yaml").read_text() == (REPO / "params.yaml").read_text()  # untouched


@pytest.mark.unit
def test_params_command_applies_a_preset_and_overrides(tmp_path):
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "seed.yaml").write_text((REPO / "presets" / "seed.yaml").read_text())
    same = run(["invaders", "params", "--preset", "default", "--seed", "0"], tmp_path).stdout
    assert same.strip() == "params.yaml: unchanged (params.yaml with seed=0)"
    assert (tmp_path / "params.yaml").read_text() == (REPO / "params.yaml").read_text()  # comments kept
    out = run(["invaders", "params", "--preset", "seed", "--steps", "20000", "--seed", "7"], tmp_path).stdout
    assert out.strip() == "params.yaml: presets/seed.yaml with train.steps=20000, seed=7"
    params = load_params(tmp_path / "params.yaml")
    assert (params.train.steps, params.seed, params.model.architecture) == (20000, 7, "seed")
    assert params.promote.model_name == "invaders-dqn-seed"
    native = run(["invaders", "params", "--mode", "native"], tmp_path).stdout
    assert native.strip() == "params.yaml: params.yaml with reproducibility.mode=native"
    assert load_params(tmp_path / "params.yaml").reproducibility.mode == "native"
    bad = run(["invaders", "params", "--mode", "fast"], tmp_path, check=False)
    assert bad.returncode == 2 and bad.stderr.strip() == (
        "error: params.yaml with reproducibility.mode=fast: reproducibility.mode: got 'fast', allowed: 'portable' or"
        " 'native'")
    assert load_params(tmp_path / "params.yaml").reproducibility.mode == "native"  # untouched


@pytest.mark.unit
def test_smoke_preset_is_params_yaml_with_the_tests_tiny_budgets():
    smoke = yaml.safe_load((REPO / "presets" / "smoke.yaml").read_text())
    expected = merge(yaml.safe_load((REPO / "params.yaml").read_text()), TINY)
    assert smoke.pop("promote") == {"model_name": "invaders-dqn-smoke", "alpha": 0.05, "min_episodes": 2}
    expected.pop("promote")
    assert smoke == expected


@pytest.mark.unit
def test_seed_preset_evaluates_enough_episodes_to_promote():
    seed = load_params(REPO / "presets" / "seed.yaml")
    assert min(seed.evaluate.episodes, seed.baseline.episodes) >= seed.promote.min_episodes
    default = load_params(REPO / "params.yaml")
    assert min(default.evaluate.episodes, default.baseline.episodes) >= default.promote.min_episodes


@pytest.mark.unit
def test_report_gate_exit_codes(tmp_path):
    decision = {
        "model_name": "m", "version": "4", "run_id": "abc", "alias": "champion", "previous_champion": "2",
        "promote": True, "beats_baseline": True, "alpha": 0.05, "min_episodes": 5, "reason": "better than the champion",
        "vs_baseline": {"against": "baseline", "candidate_episodes": 30, "rival_episodes": 30, "candidate_mean": 320.0,
                        "rival_mean": 150.0, "t": 6.0, "p_value": 1e-6, "significant": True, "reason": "..."},
        "vs_champion": {"against": "champion", "candidate_episodes": 30, "rival_episodes": 30, "candidate_mean": 320.0,
                        "rival_mean": 250.0, "t": 2.5, "p_value": 0.008, "significant": True, "reason": "..."},
    }
    (tmp_path / "promote").mkdir()
    (tmp_path / "promote" / "decision.json").write_text(json.dumps(decision))
    good = run(["invaders", "report", "--data", str(tmp_path), "--gate"], tmp_path)
    assert "| mean score | 320.0 | 150.0 | 250.0 |" in good.stdout
    assert "|  | this agent | random baseline | champion (version 2) |" in good.stdout
    assert "Gate: passed" in good.stdout
    decision.update(beats_baseline=False, promote=False, alias="challenger")
    (tmp_path / "promote" / "decision.json").write_text(json.dumps(decision))
    failed = run(["invaders", "report", "--data", str(tmp_path), "--gate"], tmp_path, check=False)
    assert failed.returncode == 1 and "Gate: **failed**" in failed.stdout
    assert run(["invaders", "report", "--data", str(tmp_path)], tmp_path).returncode == 0  # no --gate: report only
    missing = run(["invaders", "report", "--data", str(tmp_path / "nope")], tmp_path, check=False)
    assert missing.returncode == 2 and "decision.json: missing; run the stages" in missing.stderr


@pytest.mark.unit
def test_workflows_pass_actionlint_and_call_the_retrain_script():
    workflows = sorted((REPO / ".github" / "workflows").glob("*.yml"))
    assert {w.name for w in workflows} == {"pull-request.yml", "retrain.yml"}
    result = subprocess.run([str(BIN / "actionlint"), "-shellcheck", str(BIN / "shellcheck"), *map(str, workflows)],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    for workflow in workflows:
        assert "scripts/retrain.sh" in workflow.read_text()
    lint = subprocess.run([str(BIN / "shellcheck"), str(REPO / "scripts" / "retrain.sh")], capture_output=True,
                          text=True, timeout=60)
    assert lint.returncode == 0, lint.stdout


@pytest.mark.unit
def test_actionlint_does_fail_on_a_broken_workflow(tmp_path):
    """The check above can fail: a typo in an expression is an error."""
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
                      "      - run: echo ${{ github.evnt_name }}\n")
    result = subprocess.run([str(BIN / "actionlint"), str(broken)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "evnt_name" in result.stdout


@pytest.mark.unit
def test_retrain_script_is_executable():
    assert (REPO / "scripts" / "retrain.sh").stat().st_mode & 0o111
    assert Path(REPO / "scripts" / "retrain.sh").read_text().startswith("#!/usr/bin/env bash\n")


@pytest.mark.e2e
def test_the_pull_request_smoke_step_runs_as_the_workflow_says(tmp_path):
    """The pull-request workflow's smoke step, its `run:` taken from the workflow, in a checkout of a branch that
    changes a param: the whole pipeline on the smoke preset, the report with the params and metrics diffs
    against the base branch, and the files its upload step collects."""
    origin, pr = tmp_path / "origin", tmp_path / "pr"
    origin.mkdir()
    make_project(origin, yaml.safe_load((REPO / "params.yaml").read_text()), repro=False)
    run(["git", "branch", "-M", "main"], origin)
    run(["git", "checkout", "-qb", "faster-learning"], origin)
    params = (origin / "params.yaml").read_text()
    (origin / "params.yaml").write_text(params.replace("learning_rate: 0.0001", "learning_rate: 0.0002"))
    run(["git", "commit", "-qam", "a faster learning rate"], origin)
    run(["git", "clone", "-q", "--branch", "faster-learning", str(origin), str(pr)], tmp_path)

    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "pull-request.yml").read_text())
    step = next(s for s in workflow["jobs"]["test"]["steps"] if s.get("name") == "Smoke dvc repro")
    smoke = run(["bash", "-euo", "pipefail", "-c", step["run"]], pr, BASE_REF="main")
    assert ran_stages(smoke.stdout) == STAGES
    report = (pr / "smoke-report.md").read_text()
    # The smoke preset's model; which alias its 300 steps earn is the agent's score, not the workflow's doing.
    decision = json.loads((pr / "data/promote/decision.json").read_text())
    assert f"## Retrain: invaders-dqn-smoke version 1 is **{decision['alias']}**" in report
    assert "### Params: this commit against origin/main" in report
    assert re.search(r"\| params.yaml\s*\| agent.learning_rate\s*\| 0.0001\s*\| 0.0002\s*\|", report), report
    assert "### Metrics: this run against origin/main" in report
    upload = next(s for s in workflow["jobs"]["test"]["steps"] if s.get("uses", "").startswith("actions/upload"))
    for path in upload["with"]["path"].split():
        assert (pr / path).stat().st_size > 0, path
    assert load_params(pr / "params.yaml").train.steps == load_params(REPO / "presets" / "smoke.yaml").train.steps
