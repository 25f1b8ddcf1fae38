"""The sweep files in sweeps/ load as `invaders sweep` would load them, and their base params are params.yaml's but
for what each says it changes (so a sweep answers its question about the defaults, not an older copy of them)."""

import pytest
import yaml
from conftest import REPO

from invaders.config import Params
from invaders.sweep.spec import load

pytestmark = pytest.mark.unit


def flat(path) -> dict:
    return Params.model_validate(yaml.safe_load((REPO / path).read_text())).flat()


@pytest.mark.parametrize("path", sorted(p.name for p in (REPO / "sweeps").glob("*.yaml") if not p.name.endswith(".params.yaml")))
def test_every_sweep_file_loads(path, monkeypatch):
    monkeypatch.chdir(REPO)  # their params paths are relative to the project's root, where users run them
    sweep, trials = load(REPO / "sweeps" / path)
    assert trials[0].setting == "base" and len(trials) == len(sweep.seeds) * (len({t.setting for t in trials}))


def test_the_short_base_is_the_defaults_at_100000_steps():
    defaults, short = flat("params.yaml"), flat("sweeps/short.params.yaml")
    assert {k: (defaults[k], short[k]) for k in defaults if defaults[k] != short[k]} == {
        "train.steps": (300_000, 100_000), "train.eval_every": (25_000, 20_000), "evaluate.video": (True, False)}


@pytest.mark.parametrize("name, key, value", [("quantile", "agent.head", "quantile"), ("shift", "agent.augment", "shift")])
def test_each_ablation_base_is_the_short_base_with_one_component_on(name, key, value):
    short, ablation = flat("sweeps/short.params.yaml"), flat(f"sweeps/short-{name}.params.yaml")
    assert {k: ablation[k] for k in short if short[k] != ablation[k]} == {key: value}
