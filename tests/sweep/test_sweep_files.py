"""The sweep files in sweeps/ load as `invaders sweep` would load them, and their base params are params.yaml's but
for what each says it changes (so a sweep answers its question about the defaults, not an older copy of them)."""

import pytest
from conftest import REPO

from invaders.config import load_params
from invaders.sweep.spec import load

pytestmark = pytest.mark.unit


def differences(base: str, other: str) -> dict:
    """{dotted key: (base's value, other's value)} where two params files differ."""
    a, b = load_params(REPO / base).flat(), load_params(REPO / other).flat()
    return {k: (a[k], b[k]) for k in a if a[k] != b[k]}


@pytest.mark.parametrize("path", sorted(p.name for p in (REPO / "sweeps").glob("*.yaml") if not p.name.endswith(".params.yaml")))
def test_every_sweep_file_loads(path, monkeypatch):
    monkeypatch.chdir(REPO)  # their params paths are relative to the project's root, where users run them
    sweep, trials = load(REPO / "sweeps" / path)
    assert trials[0].setting == "base" and len(trials) == len(sweep.seeds) * (len({t.setting for t in trials}))


def test_the_short_base_is_the_defaults_at_100000_steps():
    assert differences("params.yaml", "sweeps/short.params.yaml") == {
        "train.steps": (300_000, 100_000), "train.eval_every": (25_000, 20_000), "evaluate.video": (True, False)}


@pytest.mark.parametrize("name, key, values", [("quantile", "agent.head", ("scalar", "quantile")),
                                               ("shift", "agent.augment", ("none", "shift"))])
def test_each_ablation_base_is_the_short_base_with_one_component_on(name, key, values):
    assert differences("sweeps/short.params.yaml", f"sweeps/short-{name}.params.yaml") == {key: values}
