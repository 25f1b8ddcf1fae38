import subprocess
import sys

import pytest
import yaml
from conftest import REPO, merge

from invaders.config import ParamsError, load_params, parse_params

pytestmark = pytest.mark.unit


def test_params_yaml_and_seed_preset_are_valid():
    default = load_params(REPO / "params.yaml")
    assert default.model.architecture == "nature" and default.env.observation == "deepmind"
    seed = load_params(REPO / "presets" / "seed.yaml")
    assert (seed.model.architecture, seed.model.dueling, seed.agent.window_length) == ("seed", "avg", 3)
    assert (seed.agent.epsilon.start, seed.agent.epsilon.end, seed.agent.epsilon.test) == (1.0, 0.1, 0.2)
    assert (seed.agent.memory_limit, seed.agent.warmup_steps, seed.train.steps) == (1000, 1000, 10_000)
    assert (seed.agent.learning_rate, seed.baseline.episodes, seed.evaluate.episodes) == (1e-4, 5, 10)


def test_the_seed_preset_keeps_the_articles_algorithm_and_the_long_one_only_a_bigger_budget():
    seed = load_params(REPO / "presets" / "seed.yaml").agent
    assert (seed.head, seed.augment, seed.n_step, seed.double_dqn, seed.prioritized.enabled) == (
        "scalar", "none", 1, False, False)
    default, long = (load_params(REPO / name).flat() for name in ("params.yaml", "presets/long.yaml"))
    assert {k for k in default if default[k] != long[k]} == {
        "agent.memory_limit", "agent.epsilon.anneal_steps", "train.steps", "train.checkpoint_every", "train.eval_every"}
    assert long["train.steps"] == 1_000_000


def test_flat_params_have_dotted_keys(default_params):
    flat = parse_params(default_params).flat()
    assert flat["agent.epsilon.anneal_steps"] == default_params["agent"]["epsilon"]["anneal_steps"]
    assert flat["seed"] == default_params["seed"]
    assert all(not isinstance(v, dict) for v in flat.values())


@pytest.mark.parametrize(
    "override, expected",
    [
        ({"agent": {"gamma": "high"}}, "agent.gamma"),
        ({"agent": {"gamma": 1.5}}, "agent.gamma"),
        ({"train": {"steps": 0}}, "train.steps"),
        ({"agent": {"gama": 0.9}}, "agent.gama: unknown key"),
        ({"extra": 1}, "extra: unknown key"),
        ({"model": {"architecture": "resnet"}}, "model.architecture: got 'resnet', allowed: 'nature' or 'seed'"),
        ({"model": {"dueling": "sum"}}, "model.dueling"),
        ({"env": {"id": "ALE/SpaceInvader-v5"}}, "env.id: 'ALE/SpaceInvader-v5' is not a registered ALE environment"),
        ({"env": {"id": "CartPole-v1"}}, "env.id"),
        ({"agent": {"warmup_steps": 400_000}}, "agent.warmup_steps (400000) must be less than train.steps"),
        ({"agent": {"memory_limit": 16}}, "memory_limit (16) must be at least batch_size (32)"),
        ({"agent": {"warmup_steps": 4}}, "warmup_steps (4) must be at least 32"),
        ({"model": {"architecture": "seed"}}, "model.architecture 'seed' needs env.observation 'raw'"),
        ({"agent": {"window_length": 64, "memory_limit": 40}}, "window_length (64) must not exceed memory_limit (40)"),
        ({"evaluate": {"episodes": 0, "video": True}}, "evaluate.episodes: Input should be greater than or equal to 1"),
        ({"agent": {"n_step": 0}}, "agent.n_step: Input should be greater than or equal to 1"),
        ({"agent": {"n_step": 99, "memory_limit": 100}}, "agent: n_step (99) must be at most memory_limit - window_length"),
        ({"agent": {"prioritized": {"alpha": 1.5}}}, "agent.prioritized.alpha: Input should be less than or equal to 1"),
        ({"agent": {"prioritized": {"beta_start": 0}}}, "agent.prioritized.beta_start: Input should be greater than 0"),
        ({"agent": {"prioritized": {"enabled": "sometimes"}}}, "agent.prioritized.enabled"),
        ({"train": {"eval_every": 400_000}}, "train: eval_every (400000) must not exceed steps (300000)"),
        ({"train": {"keep": "median"}}, "train.keep: got 'median', allowed: 'best' or 'last'"),
        ({"train": {"eval_episodes": 0}}, "train: keep 'best' needs validation"),
        ({"reproducibility": {"mode": "exact"}},
         "reproducibility.mode: got 'exact', allowed: 'portable' or 'native'"),
        ({"reproducibility": {"threads": 0}}, "reproducibility.threads: Input should be greater than or equal to 1"),
        ({"reproducibility": {"threads": "all"}}, "reproducibility.threads: Input should be a valid integer"),
        ({"agent": {"head": "categorical"}}, "agent.head: got 'categorical', allowed: 'scalar' or 'quantile'"),
        ({"agent": {"quantiles": 1}}, "agent.quantiles: Input should be greater than or equal to 2"),
        ({"agent": {"quantiles": 10_000}}, "agent.quantiles: Input should be less than or equal to 256"),
        ({"agent": {"augment": "crop"}}, "agent.augment: got 'crop', allowed: 'none' or 'shift'"),
    ],
)
def test_bad_params_name_the_key(default_params, override, expected):
    with pytest.raises(ParamsError) as err:
        parse_params(merge(default_params, override), "params.yaml")
    message = str(err.value)
    assert expected in message, message
    assert "\n" not in message


def test_unknown_env_id_suggests_the_right_one(default_params):
    with pytest.raises(ParamsError, match="did you mean ALE/SpaceInvaders"):
        parse_params(merge(default_params, {"env": {"id": "ALE/SpaceInvaders-v9"}}))


def test_bad_yaml_and_missing_file(tmp_path):
    (tmp_path / "params.yaml").write_text("seed: [1\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(tmp_path / "params.yaml")
    with pytest.raises(ParamsError, match="no such params file"):
        load_params(tmp_path / "missing.yaml")


@pytest.mark.parametrize("stage", ["baseline", "build", "train", "evaluate", "promote"])
def test_stage_with_bad_params_exits_2_with_one_line_and_writes_nothing(tmp_path, default_params, stage):
    bad = merge(default_params, {"model": {"architecture": "resnet"}, "train": {"steps": -1}})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(bad))
    result = subprocess.run([sys.executable, str(REPO / "pipeline" / f"{stage}.py")], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: params.yaml: ") and "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "mlflow.db").exists()


def test_each_random_stream_has_its_own_seed(default_params):
    """Training env, validation, baseline, evaluation and replay sampling never share episodes."""
    streams = ("train", "validation", "baseline", "evaluate", "replay")
    seeds = {s: parse_params(merge(default_params, {"seed": s})) for s in (0, 1)}
    derived = [p.stream_seed(name) for p in seeds.values() for name in streams]
    assert len(set(derived)) == 10 and all(0 <= d < 2**31 for d in derived)
    assert seeds[0].stream_seed("evaluate") == parse_params(default_params).stream_seed("evaluate")


def test_the_env_id_table_is_the_one_ale_py_registers():
    """Params are validated from a table, without importing gymnasium or ALE; it must be ale-py's list."""
    from invaders.config import ALE_ENV_IDS
    from invaders.rl.envs import known_env_ids

    assert ALE_ENV_IDS == known_env_ids()


def test_validating_params_imports_neither_gymnasium_nor_the_emulator():
    code = ("import sys; from invaders.config import load_params; load_params('params.yaml');"
            " print(sorted(m for m in ('gymnasium', 'ale_py', 'tensorflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
