"""A sweep's summary: which setting is best, by how much, and whether that is more than seed noise.

A trial's score is one number (the sweep's metric: by default the evaluate stage's mean score);
a setting's scores are its seeds' scores. Per setting: the mean and the interquartile mean (IQM,
the mean of the middle half, which one lucky or unlucky seed moves less) over seeds, each with a
95% percentile bootstrap interval that resamples seeds, from a generator with a fixed seed (the
same scores give the same intervals). The best setting is the one with the highest mean (the
earlier one on a tie). Against the base params: a one-sided Welch t-test over seeds (the
promote stage's test, `promotion.compare`), at the base params' `promote.alpha` divided by the
number of settings compared with the base (Bonferroni: picking the best of k settings and then
testing it is k tests).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from invaders import files
from invaders.stats import LEVEL, bootstrap_ci, iqm
from invaders.tracking.promotion import compare

BASE = "base"  # the setting with no overrides (invaders.sweep.spec)


def summarize(sweep, trials, results: dict[str, dict], alpha: float) -> dict:
    """The summary as `summary.json` holds it, from the trials and their last results by trial id."""
    rows, settings = [], {}
    for trial in trials:
        result = results.get(trial.id, {})
        score = result.get(sweep.metric)
        state = "ERROR" if result.get("error") else "DONE" if result.get("done") else "STOPPED"
        score = None if state != "DONE" or score is None or math.isnan(score) else float(score)
        rows.append({"id": trial.id, "setting": trial.setting, "seed": trial.seed, "state": state, "score": score,
                     "node": result.get("node"), "run_id": result.get("run_id"), "rewards": result.get("rewards"),
                     "error": result.get("error")})
        settings.setdefault(trial.setting, {"overrides": trial.overrides, "label": trial.label, "scores": {}})
        if score is not None:
            settings[trial.setting]["scores"][str(trial.seed)] = score
    for setting in settings.values():
        scores = list(setting["scores"].values())
        setting.update(seeds=len(scores), mean=None, iqm=None, mean_ci=None, iqm_ci=None)
        if scores:
            setting.update(mean=float(np.mean(scores)), iqm=iqm(scores), mean_ci=bootstrap_ci(scores, np.mean),
                           iqm_ci=bootstrap_ci(scores, iqm))
    scored = [name for name, s in settings.items() if s["mean"] is not None]
    best = max(scored, key=lambda name: settings[name]["mean"]) if scored else None  # max keeps the first
    return {"name": sweep.name, "metric": sweep.metric, "level": LEVEL, "seeds": sweep.seeds, "best": best,
            "vs_base": _vs_base(settings, best, alpha), "settings": settings, "trials": rows}


def _vs_base(settings: dict, best: str | None, alpha: float) -> dict:
    if best is None or not settings[BASE]["scores"]:
        return {"significant": False, "p_value": None, "alpha": alpha, "reason": "no finished trials to compare"}
    if best == BASE:
        return {"significant": False, "p_value": None, "alpha": alpha,
                "reason": "no setting beats the base params"}
    compared = sum(1 for name, s in settings.items() if name != BASE and s["scores"])
    level = alpha / compared
    c = compare(list(settings[best]["scores"].values()), list(settings[BASE]["scores"].values()), "base params",
                level, min_episodes=2)
    reason = (c.reason if c.p_value is not None else
              f"too few seeds to test ({c.candidate_episodes} and {c.rival_episodes}; each side needs at least 2)")
    return {"significant": c.significant, "p_value": c.p_value, "alpha": alpha, "corrected_alpha": level,
            "settings_compared": compared, "reason": reason.replace("episodes", "seeds")}


def markdown(summary: dict) -> str:
    def fmt(value, ci=None) -> str:
        if value is None:
            return "–"
        return f"{value:.1f}" + (f" [{ci[0]:.1f}, {ci[1]:.1f}]" if ci else "")

    lines = [f"# Sweep `{summary['name']}`", "",
             f"Score: `{summary['metric']}` per seed; mean and IQM over seeds with {summary['level']:.0%} bootstrap"
             " intervals.", "",
             "| setting | overrides | seeds | mean [CI] | IQM [CI] | per seed |", "|---|---|---:|---|---|---|"]
    for name, s in summary["settings"].items():
        star = " **best**" if name == summary["best"] else ""
        per_seed = ", ".join(f"{seed}: {score:.1f}" for seed, score in s["scores"].items())
        lines.append(f"| {name}{star} | {s['label']} | {s['seeds']} | {fmt(s['mean'], s['mean_ci'])}"
                     f" | {fmt(s['iqm'], s['iqm_ci'])} | {per_seed} |")
    vs = summary["vs_base"]
    if summary["best"] in (None, BASE):
        lines += ["", f"Best setting: **{summary['best']}**: {vs['reason']}."]
    else:
        verdict = "**beats the base params**" if vs["significant"] else "does not significantly beat the base params"
        lines += ["", f"Best setting: **{summary['best']}**, which {verdict}: {vs['reason']}"
                  + (f" (one-sided Welch t-test over seeds at α {vs['alpha']:g} / {vs['settings_compared']} settings"
                     " compared)" if vs.get("settings_compared") else "") + "."]
    unfinished = [t for t in summary["trials"] if t["state"] != "DONE"]
    if unfinished:
        lines += ["", "Not scored: " + ", ".join(f"{t['id']} ({t['state'].lower()})" for t in unfinished) + "."]
    return "\n".join(lines) + "\n"


def plot(summary: dict, path: Path) -> None:
    """scores.png: each seed's score as a point, the mean with its interval, the IQM as a diamond."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary["settings"])
    fig, ax = plt.subplots(figsize=(max(4.0, 1.3 * len(names) + 1.5), 3.6), dpi=100)
    for x, name in enumerate(names):
        s = summary["settings"][name]
        scores = list(s["scores"].values())
        ax.scatter([x - 0.12] * len(scores), scores, s=18, color="0.45", zorder=3,
                   label="seed" if x == 0 else None)
        if s["mean"] is not None:
            low, high = s["mean_ci"]
            ax.errorbar(x + 0.08, s["mean"], yerr=[[s["mean"] - low], [high - s["mean"]]], fmt="o", capsize=4,
                        color="C3" if name == summary["best"] else "C0", zorder=4,
                        label=f"mean, {summary['level']:.0%} CI" if x == 0 else None)
            ax.scatter([x + 0.2], [s["iqm"]], marker="D", s=22, color="C2", zorder=4, label="IQM" if x == 0 else None)
    ax.set_xticks(range(len(names)), [f"{n}\n{summary['settings'][n]['label']}"[:60] for n in names], fontsize=7)
    ax.set_ylabel(summary["metric"])
    ax.set_title(f"sweep {summary['name']}", fontsize=10)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    with files.atomic_path(path) as tmp:
        # No timestamp in the file: the same summary gives the same bytes.
        fig.savefig(tmp, format="png", metadata={"Software": None})
    plt.close(fig)


def write(summary: dict, out: Path) -> None:
    import json

    files.write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    files.write_text(out / "summary.md", markdown(summary))
    plot(summary, out / "scores.png")
