"""Stage `promote`: register the trained agent; it becomes `champion` only if it is significantly better."""

from pathlib import Path

from invaders import files, runnote
from invaders.config import load_params
from invaders.errors import exit_on_user_error
from invaders.tracking import connect

TRAIN_RUN = Path("data/train/mlflow_run.json")
EVAL_EPISODES = Path("data/eval/episodes.csv")
BASELINE_EPISODES = Path("data/baseline/episodes.csv")
OUT = Path("data/promote")


@exit_on_user_error
def main() -> None:
    params = load_params()
    train_run_id = files.read_json(TRAIN_RUN)["run_id"]
    files.require(EVAL_EPISODES)
    files.require(BASELINE_EPISODES)
    connect(params.mlflow.experiment)
    from invaders.registry import promote

    decision = promote(params.promote, train_run_id, EVAL_EPISODES, BASELINE_EPISODES)
    runnote.write(train_run_id)
    files.write_json(OUT / "decision.json", decision)
    print(f"promote: {decision['model_name']} version {decision['version']} is {decision['alias']}"
          f" ({decision['reason']})")
    if decision["alias_refused"]:
        print(f"promote: but the registry did not move the alias: {decision['alias_refused']}"
              " (an admin, or a user with MANAGE on the model, can: run the stage with their login)")


if __name__ == "__main__":
    main()
