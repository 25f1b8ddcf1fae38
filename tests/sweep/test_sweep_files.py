"""The sweep files in sweeps/ load as `invaders sweep` would load them, and the ablation sweeps' trials are
quantile-shift.yaml's base trials with one component on (so they compare with its base, seed for seed)."""

import pytest
from conftest import REPO

from invaders.config import Params
from invaders.sweep.spec import load

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def at_the_root(monkeypatch):
    monkeypatch.chdir(REPO)  # their params paths are relative to the project's root, where users run them


def base_trial(name: str, seed: int = 0) -> dict:
    """The flat params of a sweep's base trial with `seed`."""
    trial = next(t for t in load(REPO / "sweeps" / f"{name}.yaml")[1] if t.id == f"base-seed{seed}")
    return Params.model_validate(trial.params).flat()


def differences(a: dict, b: dict) -> dict:
    return {k: (a[k], b[k]) for k in a if a[k] != b[k]}


@pytest.mark.parametrize("path", sorted(p.name for p in (REPO / "sweeps").glob("*.yaml")))
def test_every_sweep_file_loads(path):
    sweep, trials = load(REPO / "sweeps" / path)
    assert trials[0].setting == "base" and len(trials) == len(sweep.seeds) * (len({t.setting for t in trials}))


@pytest.mark.parametrize("name, key, values", [("quantile", "agent.head", ("scalar", "quantile")),
                                               ("shift", "agent.augment", ("none", "shift"))])
def test_each_ablation_base_is_the_screening_base_with_one_component_on(name, key, values):
    assert differences(base_trial("quantile-shift"), base_trial(name)) == {key: values}


def test_the_screening_base_is_the_defaults_at_100000_steps():
    from invaders.config import load_params

    assert differences(load_params(REPO / "params.yaml").flat(), base_trial("quantile-shift")) == {
        "train.steps": (300_000, 100_000), "train.eval_every": (25_000, 20_000), "evaluate.video": (True, False)}
