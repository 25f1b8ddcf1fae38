"""What scripts/retrain.sh needs from Python: the params of a run, and its markdown report and gate."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from invaders import files
from invaders.config import parse_params
from invaders.errors import UserError

PRESETS = Path("presets")


def _preset_file(preset: str, params_file: Path) -> Path:
    if preset == "default":
        return params_file
    candidate = Path(preset)
    if candidate.suffix in (".yaml", ".yml") or len(candidate.parts) > 1:
        if candidate.is_file():
            return candidate
        raise UserError(f"--preset: no such params file {preset!r}")
    named = PRESETS / f"{preset}.yaml"
    if named.is_file():
        return named
    names = ", ".join(["default", *sorted(p.stem for p in PRESETS.glob("*.yaml"))])
    raise UserError(f"--preset: no preset {preset!r} (allowed: {names}, or a params file)")


def write_run_params(params_file: str | Path, preset: str | None = None, steps: int | None = None,
                     seed: int | None = None, mode: str | None = None) -> str:
    """Write `params_file` from `preset` (default: the file as it is) with `train.steps`, `seed` and
    `reproducibility.mode` overridden.

    The result is validated before anything is written; an unchanged file is left alone, comments
    included. Returns one line saying what the run uses.
    """
    params_file = Path(params_file)
    source = _preset_file(preset or "default", params_file)
    try:
        raw = yaml.safe_load(source.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"{source}: not a readable params file ({type(exc).__name__})") from None
    if not isinstance(raw, dict):
        raise UserError(f"{source}: expected a mapping of sections")
    overrides = []
    if steps is not None:
        raw.setdefault("train", {})["steps"] = steps
        overrides.append(f"train.steps={steps}")
    if seed is not None:
        raw["seed"] = seed
        overrides.append(f"seed={seed}")
    if mode is not None:
        raw.setdefault("reproducibility", {})["mode"] = mode
        overrides.append(f"reproducibility.mode={mode}")
    label = f"{source}" + (f" with {', '.join(overrides)}" if overrides else "")
    parse_params(raw, label)  # one line naming the key if the combination is not allowed
    current = yaml.safe_load(params_file.read_text()) if params_file.is_file() else None
    if raw != current:
        files.write_text(params_file, yaml.safe_dump(raw, sort_keys=False))
        return f"{params_file}: {label}"
    return f"{params_file}: unchanged ({label})"


def _decision(data: Path) -> dict:
    return files.read_json(data / "promote" / "decision.json")


def beats_baseline(data: str | Path) -> bool:
    return bool(_decision(Path(data))["beats_baseline"])


def alias_refused(data: str | Path) -> str | None:
    """Why the registry did not move the decided alias (a writer on a team server), or None."""
    return _decision(Path(data)).get("alias_refused")


def _num(value, fmt: str = ".1f") -> str:
    return "–" if value is None else format(value, fmt)


def markdown_report(data: str | Path) -> str:
    """The run's outcome for a person: decision, scores and p-values, the gate; from the stages' outputs."""
    data = Path(data)
    d = _decision(data)
    vs_b, vs_c = d["vs_baseline"], d["vs_champion"]
    lines = [f"## Retrain: {d['model_name']} version {d['version']} is **{d['alias']}**", ""]
    train = data / "train" / "metrics.json"
    if train.is_file():
        t = json.loads(train.read_text())
        kept = ""
        if t.get("selected_val_mean_reward") is not None:
            kept = (f"; kept the network from step {t['selected_step']:,}"
                    f" (validation mean {t['selected_val_mean_reward']:.1f}, `keep: {t['keep']}`)")
        lines += [f"Trained {t['steps']:,} steps ({t['episodes']} games) at {t['steps_per_s']} steps/s"
                  f" in {t['duration_seconds'] / 60:.1f} min{kept}; MLflow run `{d['run_id']}`.", ""]
    header = ["", "this agent", "random baseline"]
    rows = [
        ["episodes", str(vs_b["candidate_episodes"]), str(vs_b["rival_episodes"])],
        ["mean score", _num(vs_b["candidate_mean"]), _num(vs_b["rival_mean"])],
        ["p (agent better)", "", _num(vs_b["p_value"], ".3g")],
    ]
    if vs_c is not None:
        header.append(f"champion (version {d['previous_champion']})")
        for row, value in zip(rows, [str(vs_c["rival_episodes"]), _num(vs_c["rival_mean"]),
                                     _num(vs_c["p_value"], ".3g")]):
            row.append(value)
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    rival = "the random baseline" + (" and the champion" if vs_c is not None else " (no champion yet)")
    lines += [
        "",
        f"Decision: **{d['alias']}**: {d['reason']}.",
        "",
        *([f"**The registry did not move the `{d['alias']}` alias**: {d['alias_refused']}.", ""]
          if d.get("alias_refused") else []),
        f"Rule: champion only if a one-sided Welch t-test on per-episode scores gives p < {d['alpha']:g} against"
        f" {rival}, with at least {d['min_episodes']} episodes on each side.",
        "",
        "Gate: " + ("passed, the agent beats the random baseline." if d["beats_baseline"]
                    else "**failed**, the agent does not beat the random baseline."),
    ]
    return "\n".join(lines) + "\n"
