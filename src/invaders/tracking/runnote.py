"""The training run's description in the MLflow UI (its note, markdown), written from what the run records.

Train, evaluate and promote each rewrite it when they are done, so it always says what the run
has so far: the score against the random baseline, the promotion decision, the training's steps
and time, the commit and params, and where the video and output hashes are.
"""

from __future__ import annotations

from invaders.config import Params
from invaders.tracking.store import HASHES

NOTE = "mlflow.note.content"  # what the UI shows as the run's description
COMMIT = "mlflow.source.git.commit"  # set by MLflow when the stage runs in a git checkout


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _changed_params(params: dict[str, str]) -> str:
    """The run's params that differ from the code's defaults (MLflow stores params as str())."""
    changed = [f"`{key}={params[key]}`" for key, default in Params().flat().items()
               if key in params and params[key] != str(default)]
    return ", ".join(changed) or "none"


def describe(run) -> str:
    """Markdown for an MLflow training run (`MlflowClient().get_run`)."""
    m, t = run.data.metrics, run.data.tags
    lines = []
    if "mean_reward" in m:
        ratio = f" ({m['improvement']:.2f}×)" if "improvement" in m else ""
        lines.append(f"- **Score {m['mean_reward']:.1f}** ± {m['std_reward']:.1f} over {m['episodes']:.0f} evaluation"
                     f" episodes; the random baseline scores {m['baseline_mean_reward']:.1f}{ratio}")
    else:
        lines.append("- **Score**: not evaluated yet (the `evaluate` stage)")
    if "promote.decision" in t:
        tests = [f"p = {t[key]} against {rival}" for key, rival in (
            ("promote.p_value_baseline", "the baseline"),
            ("promote.p_value_champion", f"champion version {t.get('promote.previous_champion')}"))
            if t.get(key, "none") != "none"]  # "none": too few episodes, or no champion
        p_values = f" ({', '.join(tests)})" if tests else ""
        refused = t.get("promote.alias_refused", "none")
        lines.append(f"- **{t['promote.decision']}**, version {t['promote.version']} of `{t['promote.model_name']}`"
                     f"{p_values}: {t['promote.reason']}"
                     + ("" if refused == "none" else f"; **the registry did not move the alias**: {refused}"))
    else:
        lines.append("- **Promotion**: not decided yet (the `promote` stage)")
    if "train_steps" in m:
        kept = f"; kept the network from step {m['train_selected_step']:.0f}"
        if "train_selected_val_mean_reward" in m:
            kept += f" (validation mean {m['train_selected_val_mean_reward']:.1f})"
        resumed = f", resumed from step {t['resumed_from_step']}" if "resumed_from_step" in t else ""
        lines.append(f"- **Training**: {m['train_steps']:.0f} steps, {m['train_episodes']:.0f} games in"
                     f" {_duration(m['train_duration_seconds'])} ({m['train_steps_per_s']:.0f} steps/s{resumed}){kept}")
    commit = f"`{t[COMMIT][:12]}`" if COMMIT in t else "unknown (not a git checkout)"
    lines.append(f"- **Commit** {commit}; params that differ from the defaults: {_changed_params(run.data.params)}")
    if t.get("eval.video") == "True":
        lines.append("- **Video** of the first evaluation episode: artifact `evaluation/video/episode.mp4`")
    lines.append(f"- **Output hashes**: artifact `{HASHES}` (`sha256sum -c` checks them)")
    return "\n".join(lines) + "\n"


def write(run_id: str) -> None:
    """Rewrite the run's note from the run as the store has it now."""
    import mlflow

    client = mlflow.MlflowClient()
    client.set_tag(run_id, NOTE, describe(client.get_run(run_id)))
