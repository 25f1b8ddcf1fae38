import copy
import os
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]

# Small enough to train, evaluate and track in seconds; everything else as in params.yaml.
TINY = {
    "env": {"max_episode_steps": 150},
    "baseline": {"episodes": 2},
    "agent": {"memory_limit": 1000, "warmup_steps": 100, "epsilon": {"anneal_steps": 150}},
    "train": {"steps": 300, "log_every": 100, "checkpoint_every": 100},
    "evaluate": {"episodes": 2},
}


def merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@pytest.fixture
def default_params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


@pytest.fixture
def tiny_params(default_params) -> dict:
    return merge(default_params, TINY)
