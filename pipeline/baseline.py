"""Stage `baseline`: a uniformly random policy plays `baseline.episodes` seeded episodes."""

from pathlib import Path

from invaders import files, reproducibility
from invaders.config import load_params
from invaders.errors import exit_on_user_error
from invaders.evaluation import EPISODE_FIELDS, episode_rows, play_random, score_summary
from invaders.tracking import connect, log_output_hashes

OUT = Path("data/baseline")


@exit_on_user_error
def main() -> None:
    params = load_params()
    connect(params.mlflow.experiment)
    import mlflow

    episodes = play_random(params.env, params.baseline.episodes, params.stream_seed("baseline"))
    metrics = score_summary(episodes)
    # No TensorFlow here, but the run records the machine and mode like every other run.
    reproducibility.apply(params, playing=True, without_tensorflow=True)
    with mlflow.start_run(run_name="random-baseline", tags={"stage": "baseline", **reproducibility.tags()}) as run:
        mlflow.log_params({k: v for k, v in params.flat().items()
                           if k == "seed" or k.startswith(("env.", "baseline."))})
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
        files.write_csv(OUT / "episodes.csv", episode_rows(episodes), EPISODE_FIELDS)
        files.write_json(OUT / "metrics.json", metrics)
        files.write_json(OUT / "mlflow_run.json", {"run_id": run.info.run_id})
        mlflow.log_artifacts(str(OUT))
        log_output_hashes(OUT / "episodes.csv", OUT / "metrics.json")
    print(f"baseline: mean {metrics['mean_reward']:.1f} ± {metrics['std_reward']:.1f}"
          f" over {metrics['episodes']} episodes")


if __name__ == "__main__":
    main()
