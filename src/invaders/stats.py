"""Scores over several runs (seeds): per-run means, the mean of them, and a bootstrap confidence interval.

One evaluation says little about a setting: DQN's score varies a lot from seed to seed and from
episode to episode. `summarize` takes each run's per-episode scores and reports the mean over
runs with a 95% percentile bootstrap interval that resamples episodes within each run (so every
run keeps its weight), from a generator with a fixed seed: the same scores give the same interval.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def bootstrap_mean_ci(runs: Sequence[Sequence[float]], level: float = 0.95, resamples: int = 10_000,
                      seed: int = 0) -> tuple[float, float]:
    """Percentile interval for the mean of the runs' means, resampling episodes within each run."""
    rng = np.random.default_rng(seed)
    means = np.zeros(resamples)
    for scores in runs:
        scores = np.asarray(scores, np.float64)
        means += scores[rng.integers(0, len(scores), (resamples, len(scores)))].mean(axis=1)
    means /= len(runs)
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def summarize(runs: Mapping[str, Sequence[float]], level: float = 0.95) -> dict:
    """Per-run mean, std and episodes; the mean over runs, its bootstrap interval, the lowest run."""
    if not runs or any(len(s) == 0 for s in runs.values()):
        raise ValueError("every run needs at least one episode")
    per_run = {name: {"mean": float(np.mean(s)), "std": float(np.std(s)), "episodes": len(s)}
               for name, s in runs.items()}
    low, high = bootstrap_mean_ci(list(runs.values()), level)
    return {
        "runs": per_run,
        "mean": float(np.mean([r["mean"] for r in per_run.values()])),
        "ci": [low, high],
        "level": level,
        "lowest_run_mean": min(r["mean"] for r in per_run.values()),
        "episodes": sum(r["episodes"] for r in per_run.values()),
    }
