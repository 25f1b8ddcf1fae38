"""`invaders`: play or evaluate an agent (a file or a registry URI), scores over seeds, the retrain script's
helpers, the MLflow UI, team server users, sweeps on a Ray cluster."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from invaders.errors import UserError, exit_on_user_error

MODEL_HELP = ("a saved Q-network (.keras) or an MLflow model URI such as models:/invaders-dqn@champion,"
              " models:/invaders-dqn/3 or runs:/<run id>/model (default data/train/model.keras)")
PARAMS_HELP = "params file for the environment settings (default params.yaml; built-in defaults if absent)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="invaders", description="Atari Space Invaders DQN pipeline tools")
    commands = parser.add_subparsers(dest="command", required=True)

    play = commands.add_parser("play", help="let a trained agent play, print its scores, optionally record a video")
    play.add_argument("--model", default="data/train/model.keras", help=MODEL_HELP)
    play.add_argument("--episodes", type=int, default=1, help="episodes to play (default 1)")
    play.add_argument("--video", type=Path, help="write the first episode to this MP4 file")
    play.add_argument("--epsilon", type=float, help="exploration rate (default: agent.epsilon.test from params)")
    play.add_argument("--seed", type=int, help="episode seed (default: the evaluate stage's, derived from seed in params)")
    play.add_argument("--params", type=Path, default=Path("params.yaml"), help=PARAMS_HELP)

    ev = commands.add_parser("evaluate", help="the evaluate stage's protocol on any model: file or registry URI")
    ev.add_argument("--model", default="data/train/model.keras", help=MODEL_HELP)
    ev.add_argument("--episodes", type=int, help="episodes (default: evaluate.episodes from params)")
    ev.add_argument("--epsilon", type=float, help="exploration rate (default: evaluate.epsilon from params)")
    ev.add_argument("--seed", type=int, help="episode seed (default: the evaluate stage's, derived from seed in params)")
    ev.add_argument("--params", type=Path, default=Path("params.yaml"), help=PARAMS_HELP)
    ev.add_argument("--out", type=Path, help="write episodes.csv and metrics.json to this directory")
    ev.add_argument("--video", type=Path, help="write the first episode to this MP4 file")

    prm = commands.add_parser("params", help="write params.yaml for a run: a preset, then overrides (retrain script)")
    prm.add_argument("--preset", help="'default' (params.yaml as it is), a name in presets/ (seed, smoke, long) or a file")
    prm.add_argument("--steps", type=int, help="train.steps")
    prm.add_argument("--seed", type=int, help="seed")
    prm.add_argument("--mode", help="reproducibility.mode: portable or native")
    prm.add_argument("--file", type=Path, default=Path("params.yaml"), help="the params file to write")

    sc = commands.add_parser("scores", help="evaluation scores over several runs (seeds): mean and bootstrap CI")
    sc.add_argument("runs", nargs="+", type=Path,
                    help="runs' data directories (each with eval/episodes.csv) or episodes CSV files")
    sc.add_argument("--json", action="store_true", help="print the summary as JSON")

    rep = commands.add_parser("report", help="markdown report of a retrain from data/ (retrain script)")
    rep.add_argument("--data", type=Path, default=Path("data"), help="the pipeline's data directory")
    rep.add_argument("--gate", action="store_true",
                     help="exit 1 if the agent does not beat the random baseline (after printing the report)")
    rep.add_argument("--require-alias", action="store_true",
                     help="exit 3 if the registry refused to move the decided alias (after printing the report)")

    users = commands.add_parser("users", help="team server users (an admin's login in MLFLOW_TRACKING_USERNAME/PASSWORD)")
    user_commands = users.add_subparsers(dest="users_command", required=True)
    add = user_commands.add_parser("add", help="add a user; the password is asked for, or read from stdin")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=("reader", "writer", "admin"),
                     help="reader (browse), writer (run the pipeline) or admin")
    add.add_argument("--params", type=Path, default=Path("params.yaml"),
                     help="params file naming the experiment and registered model a writer gets (default params.yaml)")

    sw = commands.add_parser("sweep", help="settings × seeds on a Ray cluster, tracked in MLflow, with an honest summary")
    sw.add_argument("file", type=Path, help="the sweep file (e.g. sweeps/smoke.yaml)")
    sw.add_argument("--address", help="HOST:PORT of a running Ray cluster's head (default: RAY_ADDRESS, else a"
                                      " Ray instance on this machine)")
    sw.add_argument("--resume", action="store_true", help="continue the sweep of this name whose driver was stopped")
    sw.add_argument("--allow-unauthenticated-cluster", action="store_true",
                    help="use a cluster that accepts connections without a token (anyone who reaches it can run"
                         " code on it): only one you know is isolated; the sweep's parent run says so in its tags")
    sw.add_argument("--write-best", type=Path, metavar="FILE",
                    help="write the best setting's params (with the base seed) as a complete params file")

    ui = commands.add_parser("ui", help="the MLflow UI on the project's store; prints the link to the training runs")
    ui.add_argument("--port", type=int, default=5000, help="port (default 5000)")
    ui.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    ui.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file for mlflow.experiment")
    return parser


def _agent(model_spec: str, params, epsilon: float | None):
    """The model (file or URI) in a test-mode agent, after checking it fits the params' environment."""
    from invaders import reproducibility
    from invaders.rl.agent import build_agent
    from invaders.rl.envs import action_count, observation_shape
    from invaders.rl.model import check_fits, load_network
    from invaders.tracking.registry import model_file

    if epsilon is not None and not 0.0 <= epsilon <= 1.0:
        raise UserError(f"--epsilon: must be between 0 and 1 (got {epsilon})")
    reproducibility.apply(params, playing=True)
    with model_file(model_spec) as path:
        model = load_network(path)  # fully in memory: a download can go
    window = int(model.input_shape[1])  # the network's own window; frames and actions must fit the env
    check_fits(model, model_spec, observation_shape(params.env), window, action_count(params.env))
    params = params.model_copy(update={"agent": params.agent.model_copy(update={"window_length": window})})
    return build_agent(model, params, training=False, test_epsilon=epsilon)


def _params(path: Path):
    from invaders.config import Params, load_params

    return load_params(path) if path.exists() else Params()


def _episodes(value: int) -> int:
    if value < 1:
        raise UserError(f"--episodes: must be at least 1 (got {value})")
    return value


def _seed(args: argparse.Namespace, params) -> int:
    """--seed, or the evaluate stage's episode seed, so the default replays that stage's episodes."""
    return params.stream_seed("evaluate") if args.seed is None else args.seed


def play(args: argparse.Namespace) -> None:
    from invaders.rl.play import play_agent
    from invaders.rl.episodes import score_summary

    _episodes(args.episodes)
    params = _params(args.params)
    agent = _agent(args.model, params, args.epsilon)
    episodes = play_agent(agent, params.env, args.episodes, _seed(args, params), params.evaluate.parallel_episodes,
                          video=args.video)
    for e in episodes:
        print(f"episode {e.episode}: score {e.reward:g} in {e.length} steps")
    summary = score_summary(episodes)
    print(f"mean {summary['mean_reward']:.1f} ± {summary['std_reward']:.1f} over {summary['episodes']} episodes")
    if args.video:
        print(f"video: {args.video}")


def evaluate(args: argparse.Namespace) -> None:
    from invaders import files
    from invaders.rl.episodes import EPISODE_FIELDS, episode_rows, score_summary
    from invaders.rl.play import play_agent

    params = _params(args.params)
    cfg = params.evaluate
    n = _episodes(cfg.episodes if args.episodes is None else args.episodes)
    epsilon = cfg.epsilon if args.epsilon is None else args.epsilon
    agent = _agent(args.model, params, epsilon)
    episodes = play_agent(agent, params.env, n, _seed(args, params), cfg.parallel_episodes, video=args.video)
    summary = score_summary(episodes)
    if args.out:
        files.write_csv(args.out / "episodes.csv", episode_rows(episodes), EPISODE_FIELDS)
        files.write_json(args.out / "metrics.json", summary)
    print(f"{args.model}: mean {summary['mean_reward']:.1f} ± {summary['std_reward']:.1f} over {n} episodes"
          f" at epsilon {epsilon:g}" + (f"; wrote {args.out}/episodes.csv, metrics.json" if args.out else ""))


def params(args: argparse.Namespace) -> None:
    from invaders.ops.retrain import write_run_params

    print(write_run_params(args.file, args.preset, steps=args.steps, seed=args.seed, mode=args.mode))


def scores(args: argparse.Namespace) -> None:
    import json

    from invaders.rl.episodes import read_rewards
    from invaders.stats import summarize

    runs = {str(p): read_rewards(p / "eval" / "episodes.csv" if p.is_dir() else p) for p in args.runs}
    summary = summarize(runs)
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    for name, r in summary["runs"].items():
        print(f"{name}: mean {r['mean']:.1f} ± {r['std']:.1f} over {r['episodes']} episodes")
    low, high = summary["ci"]
    print(f"mean over {len(runs)} runs: {summary['mean']:.1f}, {summary['level']:.0%} bootstrap CI [{low:.1f}, {high:.1f}]"
          f" ({summary['episodes']} episodes); lowest run {summary['lowest_run_mean']:.1f}")


def report(args: argparse.Namespace) -> None:
    from invaders.ops.retrain import alias_refused, beats_baseline, markdown_report

    print(markdown_report(args.data))
    if args.gate and not beats_baseline(args.data):
        print("gate: the agent does not beat the random baseline", file=sys.stderr)
        sys.exit(1)
    if args.require_alias and (reason := alias_refused(args.data)):
        print(f"registry: the alias was not moved: {reason}", file=sys.stderr)
        sys.exit(3)


def users(args: argparse.Namespace) -> None:
    from invaders.ops.users import add_user, read_password

    params = _params(args.params)
    print(add_user(args.name, args.role, read_password(args.name), params.mlflow.experiment,
                   params.promote.model_name))


def sweep(args: argparse.Namespace) -> None:
    from invaders.sweep.driver import run

    run(args.file, address=args.address, resume=args.resume, write_best=args.write_best,
        allow_unauthenticated_cluster=args.allow_unauthenticated_cluster)


def ui(args: argparse.Namespace) -> None:
    """Serve the store with `mlflow ui`; a tracking server (MLFLOW_TRACKING_URI) is already serving,
    and only its link is printed (reading, so a team server's reader may ask too)."""
    import os

    from invaders.tracking.store import connect, experiment_link, tracking_uri, ui_link

    experiment = _params(args.params).mlflow.experiment
    uri = tracking_uri()
    if uri.startswith(("http://", "https://")):
        print(f"MLflow UI: {experiment_link(experiment)}")
        return
    experiment_id = connect(experiment)  # creates the store and the experiment if new
    print(f"MLflow UI: {ui_link(f'http://{args.host}:{args.port}', experiment_id)}", flush=True)
    # No job runner: its workers serve MLflow's GenAI jobs, which this project has none of.
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    os.execv(sys.executable, [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
                              "--host", args.host, "--port", str(args.port)])


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    {"play": play, "evaluate": evaluate, "params": params, "scores": scores, "report": report, "ui": ui,
     "users": users, "sweep": sweep}[args.command](args)


if __name__ == "__main__":
    main()
