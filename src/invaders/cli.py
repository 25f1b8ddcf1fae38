"""`invaders play`: watch a trained agent."""

from __future__ import annotations

import argparse
from pathlib import Path

from invaders.errors import UserError, exit_on_user_error


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="invaders", description="Atari Space Invaders DQN pipeline tools")
    commands = parser.add_subparsers(dest="command", required=True)
    play = commands.add_parser("play", help="let a trained agent play, print its scores, optionally record a video")
    play.add_argument("--model", type=Path, default=Path("data/train/model.keras"), help="a saved Q-network (.keras)")
    play.add_argument("--episodes", type=int, default=1, help="episodes to play (default 1)")
    play.add_argument("--video", type=Path, help="write the first episode to this MP4 file")
    play.add_argument("--epsilon", type=float, help="exploration rate (default: agent.epsilon.test from params)")
    play.add_argument("--seed", type=int, help="episode seed (default: seed from params)")
    play.add_argument("--params", type=Path, default=Path("params.yaml"),
                      help="params file for the environment settings (default params.yaml; built-in defaults if absent)")
    return parser


def play(args: argparse.Namespace) -> None:
    from invaders.agent import build_agent
    from invaders.config import Params, load_params
    from invaders.envs import action_count, observation_shape
    from invaders.evaluation import play_agent, score_summary
    from invaders.model import ModelFileError, load_network

    if args.episodes < 1:
        raise UserError(f"--episodes: must be at least 1 (got {args.episodes})")
    if args.epsilon is not None and not 0.0 <= args.epsilon <= 1.0:
        raise UserError(f"--epsilon: must be between 0 and 1 (got {args.epsilon})")
    params = load_params(args.params) if args.params.exists() else Params()
    model = load_network(args.model)

    window, *frame = model.input_shape[1:]
    if tuple(frame) != observation_shape(params.env):
        raise ModelFileError(f"{args.model}: the network takes frames of shape {tuple(frame)}, but env.observation"
                             f" {params.env.observation!r} gives {observation_shape(params.env)}")
    n_actions = action_count(params.env)
    if model.output_shape[-1] != n_actions:
        raise ModelFileError(f"{args.model}: the network has {model.output_shape[-1]} actions, {params.env.id} has {n_actions}")
    params = params.model_copy(update={"agent": params.agent.model_copy(update={"window_length": window})})

    agent = build_agent(model, params, training=False, test_epsilon=args.epsilon)
    seed = params.seed if args.seed is None else args.seed
    episodes = play_agent(agent, params.env, args.episodes, seed, video=args.video)
    for e in episodes:
        print(f"episode {e.episode}: score {e.reward:g} in {e.length} steps")
    summary = score_summary(episodes)
    print(f"mean {summary['mean_reward']:.1f} ± {summary['std_reward']:.1f} over {summary['episodes']} episodes")
    if args.video:
        print(f"video: {args.video}")


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command == "play":
        play(args)


if __name__ == "__main__":
    main()
