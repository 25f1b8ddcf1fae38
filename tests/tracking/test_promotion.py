"""The promotion rule on per-episode scores: one-sided Welch t-test, minimum episodes, baseline then champion."""

import math

import pytest

from invaders.tracking.promotion import compare, decide, welch_greater

pytestmark = pytest.mark.unit

BASELINE = [150.0, 120.0, 180.0, 95.0, 210.0, 140.0, 160.0, 130.0, 175.0, 110.0]
STRONG = [320.0, 290.0, 410.0, 350.0, 280.0, 375.0, 330.0, 300.0, 395.0, 345.0]
STRONGER = [620.0, 580.0, 700.0, 655.0, 590.0, 610.0, 640.0, 675.0, 600.0, 630.0]


def test_welch_matches_the_textbook_formula():
    from scipy.stats import t as student

    a, b = STRONG[:6], BASELINE[:8]
    t, p = welch_greater(a, b)
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    va = sum((x - ma) ** 2 for x in a) / (len(a) - 1)
    vb = sum((x - mb) ** 2 for x in b) / (len(b) - 1)
    se2 = va / len(a) + vb / len(b)
    df = se2**2 / ((va / len(a)) ** 2 / (len(a) - 1) + (vb / len(b)) ** 2 / (len(b) - 1))
    assert t == pytest.approx((ma - mb) / math.sqrt(se2))
    assert p == pytest.approx(student.sf(t, df))


def test_clearly_better_than_the_champion_is_promoted():
    d = decide(STRONGER, BASELINE, STRONG, alpha=0.05, min_episodes=5)
    assert d.promote and d.beats_baseline
    assert d.vs_champion.significant and d.vs_champion.p_value < 1e-6
    assert d.vs_champion.candidate_mean == pytest.approx(630.0) and d.vs_champion.rival_mean == pytest.approx(339.5)
    assert d.reason.startswith("better than the champion")


def test_worse_than_the_champion_is_a_challenger_even_if_it_beats_the_baseline():
    d = decide(STRONG, BASELINE, STRONGER, alpha=0.05, min_episodes=5)
    assert not d.promote and d.beats_baseline
    assert d.vs_champion.p_value > 0.99 and d.vs_champion.t < 0
    assert d.reason.startswith("not significantly better than the champion")


def test_tied_with_the_champion_is_not_promoted():
    same = decide(STRONG, BASELINE, list(STRONG), alpha=0.05, min_episodes=5)
    assert not same.promote and same.vs_champion.t == pytest.approx(0.0) and same.vs_champion.p_value == 0.5
    # A small lead inside the noise is no evidence either.
    nudged = decide([r + 5 for r in STRONG], BASELINE, STRONG, alpha=0.05, min_episodes=5)
    assert not nudged.promote and 0.05 < nudged.vs_champion.p_value < 0.5
    # Constant scores on both sides: equal is a tie (p = 1), higher is certain (p = 0).
    assert welch_greater([0.0, 0.0, 0.0], [0.0, 0.0]) == (0.0, 1.0)
    assert welch_greater([5.0, 5.0, 5.0], [0.0, 0.0]) == (math.inf, 0.0)


def test_too_few_episodes_on_either_side_is_never_significant():
    four = decide(STRONGER[:4], BASELINE, None, alpha=0.05, min_episodes=5)
    assert not four.promote and not four.beats_baseline
    assert four.vs_baseline.p_value is None and four.vs_baseline.t is None
    assert four.reason == "too few episodes to test against the baseline (4 and 10; each side needs at least 5)"
    champion_short = decide(STRONGER, BASELINE, STRONG[:3], alpha=0.05, min_episodes=5)
    assert champion_short.beats_baseline and not champion_short.promote
    assert "(10 and 3; each side needs at least 5)" in champion_short.reason
    # The same scores pass once both sides have enough episodes.
    assert decide(STRONGER[:5], BASELINE[:5], None, alpha=0.05, min_episodes=5).promote


def test_with_no_champion_yet_it_must_beat_the_baseline():
    first = decide(STRONG, BASELINE, None, alpha=0.05, min_episodes=5)
    assert first.promote and first.vs_champion is None
    assert first.reason.endswith("; no champion yet")
    random_like = [140.0, 170.0, 100.0, 200.0, 150.0, 125.0, 165.0, 135.0, 180.0, 105.0]
    second = decide(random_like, BASELINE, None, alpha=0.05, min_episodes=5)
    assert not second.promote and not second.beats_baseline and second.vs_baseline.p_value > 0.05


def test_a_better_agent_that_does_not_beat_the_baseline_is_not_promoted():
    weak_champion = [10.0, 20.0, 15.0, 5.0, 12.0]
    d = decide(BASELINE, BASELINE, weak_champion, alpha=0.05, min_episodes=5)
    assert d.vs_champion.significant and not d.beats_baseline and not d.promote


def test_alpha_is_the_threshold():
    p = compare(STRONG[:5], BASELINE[:5], "baseline", alpha=0.05, min_episodes=5).p_value
    assert compare(STRONG[:5], BASELINE[:5], "baseline", alpha=p * 1.01, min_episodes=5).significant
    assert not compare(STRONG[:5], BASELINE[:5], "baseline", alpha=p, min_episodes=5).significant


def test_decision_serialises_for_decision_json():
    out = decide(STRONG, BASELINE, None, alpha=0.05, min_episodes=5).to_dict()
    assert set(out) == {"promote", "beats_baseline", "alpha", "min_episodes", "reason", "vs_baseline", "vs_champion"}
    assert out["vs_champion"] is None and out["vs_baseline"]["against"] == "baseline"
    assert out["vs_baseline"]["candidate_episodes"] == 10
