"""Stage `build`: the untrained Q-network from params, with its summary."""

from invaders.config import load_params
from invaders.errors import exit_on_user_error
from invaders.stages import arguments
from invaders.stages.build import build


@exit_on_user_error
def main() -> None:
    paths = arguments(build)
    build(load_params(), **paths)


if __name__ == "__main__":
    main()
