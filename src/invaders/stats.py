"""Scores over several runs (seeds): per-run means, the mean of them, and bootstrap confidence intervals.

One evaluation says little about a setting: DQN's score varies a lot from seed to seed and from
episode to episode. `summarize` takes each run's per-episode scores and reports the mean over
runs with a 95% percentile bootstrap interval that resamples episodes within each run (so every
run keeps its weight), from a generator with a fixed seed: the same scores give the same interval.

The one bootstrap: `_resample` draws resamples with replacement and `_interval` takes the percentile
interval of a statistic over them. Two schemes use it: `bootstrap_mean_ci` resamples episodes within
each run (`invaders scores`), `bootstrap_ci` resamples the values themselves, such as a setting's
seeds' scores (the sweep summary), for the mean or the interquartile mean (`iqm`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

LEVEL = 0.95
RESAMPLES = 10_000


def _resample(rng: np.random.Generator, values: np.ndarray, resamples: int) -> np.ndarray:
    """`resamples` rows, each `len(values)` values drawn from `values` with replacement."""
    return values[rng.integers(0, len(values), (resamples, len(values)))]


def _interval(statistics: np.ndarray, level: float) -> tuple[float, float]:
    """The central `level` percentile interval of the resampled statistics."""
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(statistics, [tail, 100 - tail])
    return float(low), float(high)


def iqm(values) -> float:
    """Interquartile mean: the mean of the middle 50% (a quarter off each end, as scipy's trim_mean)."""
    return float(_iqm_rows(np.asarray(values, np.float64)[None])[0])


def _iqm_rows(rows: np.ndarray) -> np.ndarray:
    cut = int(0.25 * rows.shape[1])
    return np.sort(rows, axis=1)[:, cut:rows.shape[1] - cut].mean(axis=1)


def bootstrap_mean_ci(runs: Sequence[Sequence[float]], level: float = LEVEL, resamples: int = RESAMPLES,
                      seed: int = 0) -> tuple[float, float]:
    """Percentile interval for the mean of the runs' means, resampling episodes within each run."""
    rng = np.random.default_rng(seed)
    means = np.zeros(resamples)
    for scores in runs:
        means += _resample(rng, np.asarray(scores, np.float64), resamples).mean(axis=1)
    means /= len(runs)
    return _interval(means, level)


def bootstrap_ci(values, statistic: Callable = np.mean, seed: int = 0, level: float = LEVEL,
                 resamples: int = RESAMPLES) -> list[float]:
    """Percentile interval of `statistic` (`np.mean` or `iqm`) over `values` resampled with replacement."""
    samples = _resample(np.random.default_rng(seed), np.asarray(values, np.float64), resamples)
    statistics = _iqm_rows(samples) if statistic is iqm else samples.mean(axis=1)
    return list(_interval(statistics, level))


def summarize(runs: Mapping[str, Sequence[float]], level: float = LEVEL) -> dict:
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
