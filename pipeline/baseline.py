"""Stage `baseline`: a uniformly random policy plays `baseline.episodes` seeded episodes."""

from invaders.config import load_params
from invaders.errors import exit_on_user_error
from invaders.stages import arguments
from invaders.stages.baseline import baseline


@exit_on_user_error
def main() -> None:
    paths = arguments(baseline)
    baseline(load_params(), **paths)


if __name__ == "__main__":
    main()
