"""Stage `build`: the untrained Q-network from params, with its summary."""

from __future__ import annotations

from pathlib import Path

from invaders import files, reproducibility
from invaders.config import Params
from invaders.stages import Echo


def build(params: Params, out: Path = Path("data/model"), echo: Echo = print) -> dict:
    """The untrained Q-network from params, seeded: `out/model.keras`, `out/summary.json|txt`."""
    reproducibility.apply(params)
    from invaders.rl.envs import action_count, observation_shape
    from invaders.rl.model import build_q_network, save_network, summarize, summary_text
    from invaders.seeding import seed_everything

    seed_everything(params.seed)  # the initial weights
    model = build_q_network(params.model, observation_shape(params.env), params.agent.window_length,
                            action_count(params.env), params.agent.head_quantiles)
    out.mkdir(parents=True, exist_ok=True)
    save_network(model, out / "model.keras")
    summary = summarize(model)
    files.write_json(out / "summary.json", summary)
    files.write_text(out / "summary.txt", summary_text(model))
    echo(f"build: {summary['name']}, {summary['params']:,} parameters, {summary['n_actions']} actions")
    return summary
