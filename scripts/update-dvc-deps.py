"""Rewrite each stage's command and `src/` deps in dvc.yaml from the code: the stage function's path
arguments (their defaults) and the files its script runs (`invaders.sources.closure`). Run it after moving
or adding modules; tests/base/test_dvc_deps.py fails until dvc.yaml agrees with the code."""

import importlib
import inspect
import re
import sys
from pathlib import Path

import yaml

from invaders import sources

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    text = (ROOT / "dvc.yaml").read_text()
    for name, stage in yaml.safe_load(text)["stages"].items():
        function = getattr(importlib.import_module(f"invaders.stages.{name}"), name)
        paths = " ".join(f"--{key.replace('_', '-')} {p.default}" for key, p in inspect.signature(function).parameters.items()
                         if isinstance(p.default, Path))
        code = [p.relative_to(ROOT).as_posix() for p in sources.closure(ROOT / "pipeline" / f"{name}.py")]
        data = [d for d in stage["deps"] if not d.startswith(("src/", "pipeline/"))]
        deps = "".join(f"      - {d}\n" for d in [f"pipeline/{name}.py", *code, *data])
        block = re.compile(rf"(  {name}:\n    cmd: )[^\n]*\n    deps:\n(?:      - [^\n]*\n)+")
        text, found = block.subn(lambda m: f"{m.group(1)}python pipeline/{name}.py {paths}\n    deps:\n{deps}", text)
        if found != 1:
            sys.exit(f"dvc.yaml: stage {name}: no `cmd:` line followed by `deps:` to rewrite")
    (ROOT / "dvc.yaml").write_text(text)


if __name__ == "__main__":
    main()
