"""Stage `evaluate`: the trained agent plays seeded episodes; scores and video go to the training run."""

from __future__ import annotations

from pathlib import Path

from invaders import files, reproducibility
from invaders.config import Params
from invaders.stages import Echo
from invaders.tracking import runnote
from invaders.tracking.store import TrackingError, connect, log_output_hashes, redact, run_exists, tracking_uri


def evaluate(params: Params, model: Path = Path("data/train/model.keras"),
             train_run: Path = Path("data/train/mlflow_run.json"), baseline: Path = Path("data/baseline/metrics.json"),
             baseline_run: Path = Path("data/baseline/mlflow_run.json"), out: Path = Path("data/eval"),
             echo: Echo = print) -> dict:
    """The trained agent plays `evaluate.episodes` seeded episodes: `out/episodes.csv`, `out/metrics.json`
    (and the video), recorded in the training run as metrics, tags and artifacts."""
    files.require(model)
    train_run_id = files.read_json(train_run)["run_id"]
    baseline_run_id = files.read_json(baseline_run)["run_id"]
    baseline_mean = files.read_json(baseline)["mean_reward"]
    connect(params.mlflow.experiment)
    for path, run_id in ((train_run, train_run_id), (baseline_run, baseline_run_id)):
        if not run_exists(run_id):
            raise TrackingError(f"{path}: run {run_id} is not in the MLflow store {redact(tracking_uri())!r}"
                                " (was the store changed since?); rerun the pipeline: dvc repro -f")
    reproducibility.apply(params, playing=True)

    import mlflow

    from invaders.rl.agent import load_agent
    from invaders.rl.episodes import EPISODE_FIELDS, episode_rows, improvement, score_summary
    from invaders.rl.play import play_agent

    cfg = params.evaluate
    agent = load_agent(model, params, training=False, test_epsilon=cfg.epsilon)
    video = out / "video" / "episode.mp4" if cfg.video else None
    (out / "video").mkdir(parents=True, exist_ok=True)
    episodes = play_agent(agent, params.env, cfg.episodes, params.stream_seed("evaluate"), cfg.parallel_episodes,
                          video=video)
    metrics = score_summary(episodes)
    metrics.update(baseline_mean_reward=baseline_mean, improvement=improvement(metrics["mean_reward"], baseline_mean))

    files.write_csv(out / "episodes.csv", episode_rows(episodes), EPISODE_FIELDS)
    files.write_json(out / "metrics.json", metrics)
    if video is None:
        (out / "video" / "episode.mp4").unlink(missing_ok=True)
    # Params are immutable in MLflow, so an evaluation is recorded as metrics (a re-run adds a
    # point to each metric's history), tags (its settings) and artifacts (replaced). The metrics
    # keep metrics.json's names, the baseline run's: one column and one chart compare them.
    with mlflow.start_run(run_id=train_run_id):
        evals = int(mlflow.active_run().data.tags.get("eval.count", "0")) + 1
        mlflow.set_tags({"baseline_run_id": baseline_run_id, "eval.count": evals,
                         "eval.episodes": cfg.episodes, "eval.epsilon": cfg.epsilon, "eval.video": cfg.video,
                         "eval.parallel_episodes": cfg.parallel_episodes}
                       | {f"eval.{k}": v for k, v in reproducibility.tags().items()})
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None}, step=evals)
        mlflow.log_artifacts(str(out), artifact_path="evaluation")
        log_output_hashes(out / "episodes.csv", out / "metrics.json", *([video] if video else []))
    runnote.write(train_run_id)
    ratio = metrics["improvement"]
    echo(f"evaluate: mean {metrics['mean_reward']:.1f} ± {metrics['std_reward']:.1f} over {cfg.episodes}"
         f" episodes ({'n/a' if ratio is None else f'{ratio:.2f}x'} the random baseline's {baseline_mean:.1f})")
    return metrics
