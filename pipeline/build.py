"""Stage `build`: the untrained Q-network from params, with its summary."""

from pathlib import Path

from invaders import files
from invaders.config import load_params
from invaders.envs import action_count, observation_shape
from invaders.errors import exit_on_user_error

OUT = Path("data/model")


@exit_on_user_error
def main() -> None:
    params = load_params()  # before TensorFlow is imported: bad params fail fast
    from invaders import reproducibility

    reproducibility.apply(params)
    from invaders.agent import seed_everything
    from invaders.model import build_q_network, save_network, summarize, summary_text

    seed_everything(params.seed)  # the initial weights
    model = build_q_network(params.model, observation_shape(params.env), params.agent.window_length,
                            action_count(params.env))
    OUT.mkdir(parents=True, exist_ok=True)
    save_network(model, OUT / "model.keras")
    summary = summarize(model)
    files.write_json(OUT / "summary.json", summary)
    files.write_text(OUT / "summary.txt", summary_text(model))
    print(f"build: {summary['name']}, {summary['params']:,} parameters, {summary['n_actions']} actions")


if __name__ == "__main__":
    main()
