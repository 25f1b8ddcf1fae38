"""Episodes as data: what one played episode scored, its summary statistics, the episodes CSV.

Pure Python and NumPy (no emulator, no TensorFlow): the baseline and promote stages and the
registry read and summarise episodes without loading either.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from invaders.errors import UserError
from invaders.files import require

EPISODE_FIELDS = ["episode", "reward", "length"]


@dataclass(frozen=True)
class Episode:
    episode: int
    reward: float  # the raw game score, never clipped
    length: int  # agent steps


def score_summary(episodes: list[Episode]) -> dict[str, float | int]:
    rewards = np.array([e.reward for e in episodes], dtype=np.float64)
    return {
        "mean_reward": float(rewards.mean()),
        "std_reward": float(rewards.std()),
        "min_reward": float(rewards.min()),
        "max_reward": float(rewards.max()),
        "episodes": len(episodes),
    }


def episode_rows(episodes: list[Episode]) -> list[dict]:
    return [asdict(e) for e in episodes]


def read_rewards(path: str | Path) -> list[float]:
    """The `reward` column of an episodes CSV (as `episode_rows` writes it), in episode order."""
    with open(require(path), newline="") as f:
        rows = list(csv.DictReader(f))
    try:
        rewards = [float(row["reward"]) for row in rows]
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{path}: not an episodes CSV (columns {', '.join(EPISODE_FIELDS)})") from None
    if not rewards:
        raise UserError(f"{path}: no episodes")
    return rewards


def improvement(mean: float, baseline_mean: float) -> float | None:
    """Ratio of the agent's mean score to the random baseline's (None if that is not positive)."""
    return mean / baseline_mean if baseline_mean > 0 else None
