"""Stage `baseline`: a uniformly random policy plays seeded episodes; no TensorFlow."""

from __future__ import annotations

from pathlib import Path

from invaders import files, reproducibility
from invaders.config import Params
from invaders.rl.episodes import EPISODE_FIELDS, episode_rows, score_summary
from invaders.rl.random_play import play_random
from invaders.stages import Echo
from invaders.tracking.store import connect, log_output_hashes


def baseline(params: Params, out: Path = Path("data/baseline"), tags: dict[str, str] | None = None,
             echo: Echo = print) -> dict:
    """A uniformly random policy plays `baseline.episodes` seeded episodes: `out/episodes.csv`,
    `out/metrics.json` and `out/mlflow_run.json`, its own MLflow run (with `tags`). No TensorFlow."""
    connect(params.mlflow.experiment)
    import mlflow

    episodes = play_random(params.env, params.baseline.episodes, params.stream_seed("baseline"))
    metrics = score_summary(episodes)
    # No TensorFlow here, but the run records the machine and mode like every other run.
    reproducibility.apply(params, playing=True, without_tensorflow=True)
    with mlflow.start_run(run_name="random-baseline",
                          tags={"stage": "baseline", **reproducibility.tags(), **(tags or {})}) as run:
        mlflow.log_params({k: v for k, v in params.flat().items()
                           if k == "seed" or k.startswith(("env.", "baseline."))})
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
        files.write_csv(out / "episodes.csv", episode_rows(episodes), EPISODE_FIELDS)
        files.write_json(out / "metrics.json", metrics)
        files.write_json(out / "mlflow_run.json", {"run_id": run.info.run_id})
        mlflow.log_artifacts(str(out))
        log_output_hashes(out / "episodes.csv", out / "metrics.json")
    echo(f"baseline: mean {metrics['mean_reward']:.1f} ± {metrics['std_reward']:.1f}"
         f" over {metrics['episodes']} episodes")
    return metrics
