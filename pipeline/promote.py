"""Stage `promote`: register the trained agent; it becomes `champion` only if it is significantly better."""

from invaders.config import load_params
from invaders.errors import exit_on_user_error
from invaders.stages import arguments
from invaders.stages.promote import promote


@exit_on_user_error
def main() -> None:
    paths = arguments(promote)
    promote(load_params(), **paths)


if __name__ == "__main__":
    main()
