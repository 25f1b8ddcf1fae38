"""Stage `evaluate`: the trained agent plays seeded episodes; scores and video go to the training run."""

from invaders.config import load_params
from invaders.errors import exit_on_user_error
from invaders.stages import arguments
from invaders.stages.evaluate import evaluate


@exit_on_user_error
def main() -> None:
    paths = arguments(evaluate)
    evaluate(load_params(), **paths)


if __name__ == "__main__":
    main()
