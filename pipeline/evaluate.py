"""Stage `evaluate`: the trained agent plays seeded episodes; scores and video go to the training run."""

from pathlib import Path

from invaders import files, reproducibility
from invaders.config import load_params
from invaders.errors import exit_on_user_error
from invaders.tracking import TrackingError, connect, redact, run_exists, tracking_uri

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
    reproducibility.apply(params, playing=True)

    from invaders.runs import evaluate_run

    metrics = evaluate_run(params, MODEL, train_run_id, OUT, baseline_mean, baseline_run_id)
    ratio = metrics["improvement"]
    print(f"evaluate: mean {metrics['mean_reward']:.1f} ± {metrics['std_reward']:.1f} over {cfg.episodes} episodes"
          f" ({'n/a' if ratio is None else f'{ratio:.2f}x'} the random baseline's {baseline_mean:.1f})")


if __name__ == "__main__":
    main()
