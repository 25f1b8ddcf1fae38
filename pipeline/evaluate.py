"""Stage `evaluate`: the trained agent plays seeded episodes; scores and video go to the training run."""

from pathlib import Path

from invaders import files, reproducibility, runnote
from invaders.config import load_params
from invaders.errors import exit_on_user_error
from invaders.evaluation import EPISODE_FIELDS, episode_rows, improvement, play_agent, score_summary
from invaders.tracking import TrackingError, connect, log_output_hashes, redact, run_exists, tracking_uri

MODEL = Path("data/train/model.keras")
TRAIN_RUN = Path("data/train/mlflow_run.json")
BASELINE = Path("data/baseline/metrics.json")
BASELINE_RUN = Path("data/baseline/mlflow_run.json")
OUT = Path("data/eval")


@exit_on_user_error
def main() -> None:
    params = load_params()
    cfg = params.evaluate
    files.require(MODEL)
    train_run_id = files.read_json(TRAIN_RUN)["run_id"]
    baseline_run_id = files.read_json(BASELINE_RUN)["run_id"]
    baseline_mean = files.read_json(BASELINE)["mean_reward"]
    connect(params.mlflow.experiment)
    for path, run_id in ((TRAIN_RUN, train_run_id), (BASELINE_RUN, baseline_run_id)):
        if not run_exists(run_id):
            raise TrackingError(f"{path}: run {run_id} is not in the MLflow store {redact(tracking_uri())!r}"
                                " (was the store changed since?); rerun the pipeline: dvc repro -f")
    import mlflow

    reproducibility.apply(params, playing=True)

    from invaders.agent import load_agent

    agent = load_agent(MODEL, params, training=False, test_epsilon=cfg.epsilon)
    video = OUT / "video" / "episode.mp4" if cfg.video else None
    (OUT / "video").mkdir(parents=True, exist_ok=True)
    episodes = play_agent(agent, params.env, cfg.episodes, params.stream_seed("evaluate"), video=video)
    metrics = score_summary(episodes)
    metrics.update(baseline_mean_reward=baseline_mean, improvement=improvement(metrics["mean_reward"], baseline_mean))

    files.write_csv(OUT / "episodes.csv", episode_rows(episodes), EPISODE_FIELDS)
    files.write_json(OUT / "metrics.json", metrics)
    if video is None:
        (OUT / "video" / "episode.mp4").unlink(missing_ok=True)
    # Params are immutable in MLflow, so an evaluation is recorded as metrics (a re-run adds a
    # point to each metric's history), tags (its settings) and artifacts (replaced). The metrics
    # keep metrics.json's names, the baseline run's: one column and one chart compare them.
    with mlflow.start_run(run_id=train_run_id):
        evals = int(mlflow.active_run().data.tags.get("eval.count", "0")) + 1
        mlflow.set_tags({"baseline_run_id": baseline_run_id, "eval.count": evals,
                         "eval.episodes": cfg.episodes, "eval.epsilon": cfg.epsilon, "eval.video": cfg.video}
                       | {f"eval.{k}": v for k, v in reproducibility.tags().items()})
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None}, step=evals)
        mlflow.log_artifacts(str(OUT), artifact_path="evaluation")
        log_output_hashes(OUT / "episodes.csv", OUT / "metrics.json", *([video] if video else []))
    runnote.write(train_run_id)
    ratio = metrics["improvement"]
    print(f"evaluate: mean {metrics['mean_reward']:.1f} ± {metrics['std_reward']:.1f} over {cfg.episodes} episodes"
          f" ({'n/a' if ratio is None else f'{ratio:.2f}x'} the random baseline's {baseline_mean:.1f})")


if __name__ == "__main__":
    main()
