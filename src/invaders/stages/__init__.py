"""What each stage of the pipeline does: `baseline`, `build`, `train`, `evaluate`, `promote`.

Each is a function of the params and the paths it reads and writes; the stage scripts in
`pipeline/` parse those paths from the command `dvc.yaml` gives them (`arguments`) and call it,
and a sweep trial calls the same functions in its own directory. The defaults of the path
arguments are the pipeline's layout under `data/` (tests/base/test_dvc_deps.py checks `dvc.yaml`
against them). Every stage records itself in MLflow and writes its outputs atomically.
"""

from __future__ import annotations

import argparse
import inspect
from collections.abc import Callable
from pathlib import Path

Echo = Callable[[str], None]  # where a stage's lines go: stdout for the scripts, stderr in a sweep trial


def arguments(stage: Callable, argv: list[str] | None = None) -> dict[str, Path]:
    """The stage's paths from its command line (`--model data/model/model.keras ...`, as `dvc.yaml`
    passes them); a path not given keeps its default, the pipeline's layout."""
    parser = argparse.ArgumentParser(prog=f"pipeline/{stage.__name__}.py", description=inspect.getdoc(stage))
    for name, parameter in inspect.signature(stage).parameters.items():
        if isinstance(parameter.default, Path):
            parser.add_argument(f"--{name.replace('_', '-')}", type=Path, default=parameter.default,
                                metavar="PATH", help=f"default {parameter.default}")
    return vars(parser.parse_args(argv))
