"""The promotion rule: is a new agent's evaluation better than a rival's, beyond chance?

Pure statistics on per-episode scores; the MLflow registry side is in `registry.py`.

Rule: a candidate becomes champion only if, at significance level `alpha`, a one-sided
Welch t-test (H1: the candidate's mean score is greater) rejects on per-episode scores
- against the random baseline, and
- against the current champion's recorded evaluation, if there is a champion;
each side of each comparison needing at least `min_episodes` episodes. Otherwise it is a
challenger.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Comparison:
    """Candidate against one rival (`baseline` or `champion`)."""

    against: str
    candidate_episodes: int
    rival_episodes: int
    candidate_mean: float
    rival_mean: float
    t: float | None  # None when a side has too few episodes to test
    p_value: float | None
    significant: bool
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Decision:
    promote: bool
    alpha: float
    min_episodes: int
    vs_baseline: Comparison
    vs_champion: Comparison | None  # None: there was no champion to beat
    reason: str

    @property
    def beats_baseline(self) -> bool:
        return self.vs_baseline.significant

    def to_dict(self) -> dict:
        return {
            "promote": self.promote,
            "beats_baseline": self.beats_baseline,
            "alpha": self.alpha,
            "min_episodes": self.min_episodes,
            "reason": self.reason,
            "vs_baseline": self.vs_baseline.to_dict(),
            "vs_champion": None if self.vs_champion is None else self.vs_champion.to_dict(),
        }


def welch_greater(candidate: Sequence[float], rival: Sequence[float]) -> tuple[float, float]:
    """One-sided Welch t-test, H1: mean(candidate) > mean(rival); returns (t, p).

    Both sides constant (zero variance, where the t statistic is undefined): p is 0 if the
    candidate's score is higher and 1 otherwise (a tie is no evidence).
    """
    from scipy.stats import ttest_ind

    a, b = np.asarray(candidate, dtype=np.float64), np.asarray(rival, dtype=np.float64)
    if a.var() == 0.0 and b.var() == 0.0:
        diff = a.mean() - b.mean()
        if diff > 0:
            return math.inf, 0.0
        return (-math.inf if diff < 0 else 0.0), 1.0
    result = ttest_ind(a, b, equal_var=False, alternative="greater")
    return float(result.statistic), float(result.pvalue)


def compare(candidate: Sequence[float], rival: Sequence[float], against: str, alpha: float,
            min_episodes: int) -> Comparison:
    """The candidate's scores against a rival's, at level `alpha`."""
    n, m = len(candidate), len(rival)
    if n == 0 or m == 0:
        raise ValueError(f"no {'candidate' if n == 0 else against} episodes to compare")
    mean_c, mean_r = float(np.mean(candidate)), float(np.mean(rival))
    common = dict(against=against, candidate_episodes=n, rival_episodes=m, candidate_mean=mean_c, rival_mean=mean_r)
    if min(n, m) < min_episodes:
        return Comparison(**common, t=None, p_value=None, significant=False,
                          reason=f"too few episodes to test against the {against} ({n} and {m};"
                                 f" each side needs at least {min_episodes})")
    t, p = welch_greater(candidate, rival)
    significant = p < alpha
    verdict = "better than" if significant else "not significantly better than"
    return Comparison(**common, t=t, p_value=p, significant=significant,
                      reason=f"{verdict} the {against}: mean {mean_c:.1f} vs {mean_r:.1f}, p = {p:.3g}"
                             f" {'<' if significant else '>='} {alpha:g}")


def decide(candidate: Sequence[float], baseline: Sequence[float], champion: Sequence[float] | None,
           alpha: float, min_episodes: int) -> Decision:
    """Promote only if the candidate beats the baseline and, if there is one, the champion."""
    vs_baseline = compare(candidate, baseline, "baseline", alpha, min_episodes)
    vs_champion = None if champion is None else compare(candidate, champion, "champion", alpha, min_episodes)
    if not vs_baseline.significant:
        reason = vs_baseline.reason
    elif vs_champion is None:
        reason = f"{vs_baseline.reason}; no champion yet"
    else:
        reason = vs_champion.reason
    promote = vs_baseline.significant and (vs_champion is None or vs_champion.significant)
    return Decision(promote=promote, alpha=alpha, min_episodes=min_episodes, vs_baseline=vs_baseline,
                    vs_champion=vs_champion, reason=reason)
