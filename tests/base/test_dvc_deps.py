"""`dvc.yaml` agrees with the code: every stage lists exactly the project files its script runs
(a change to code a stage runs re-runs it, a change elsewhere does not), and its command passes the
paths the stage function takes, each a declared dep or output."""

import importlib
import inspect
import shlex
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from invaders import sources

pytestmark = pytest.mark.unit

STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def code_deps(script: Path) -> set[str]:
    return {p.relative_to(REPO).as_posix() for p in sources.closure(script)}


@pytest.mark.parametrize("name", list(STAGES))
def test_each_stage_depends_on_exactly_the_code_it_runs(name):
    stage = STAGES[name]
    script = shlex.split(stage["cmd"])[1]
    listed = {d for d in stage["deps"] if d.startswith("src/")}
    assert script in stage["deps"], name
    needed = code_deps(REPO / script)
    assert listed == needed, f"stage {name}: missing {sorted(needed - listed)}, extra {sorted(listed - needed)}"


@pytest.mark.parametrize("name", list(STAGES))
def test_each_stage_command_passes_the_stage_functions_paths(name):
    """The command's paths are the stage function's defaults (so `python pipeline/<stage>.py` alone does what
    DVC does), each input a dep and each output an out or metric of the stage."""
    stage = STAGES[name]
    args = shlex.split(stage["cmd"])[2:]
    passed = dict(zip((a.removeprefix("--").replace("-", "_") for a in args[0::2]), args[1::2]))
    function = getattr(importlib.import_module(f"invaders.stages.{name}"), name)
    defaults = {k: str(p.default) for k, p in inspect.signature(function).parameters.items()
                if isinstance(p.default, Path)}
    assert passed == defaults
    declared = {next(iter(o)) if isinstance(o, dict) else o for o in stage.get("outs", []) + stage.get("metrics", [])}
    for key, path in passed.items():
        if key == "out":
            assert all(Path(o).parent == Path(path) or Path(o) == Path(path) / "video" for o in declared), declared
        else:
            assert path in stage["deps"], (name, path)


def test_the_import_scan_sees_nested_package_and_parent_imports(tmp_path):
    script = tmp_path / "stage.py"
    script.write_text("from invaders import files\n\ndef main():\n    from invaders.rl.agent import build_agent\n"
                      "    import invaders.rl.model\n    from invaders.rl import checkpoint\n")
    assert sources.imported(script) == {"invaders", "invaders.files", "invaders.rl.agent", "invaders.rl.model",
                                        "invaders.rl", "invaders.rl.checkpoint"}
    deps = code_deps(script)
    assert {"src/invaders/rl/__init__.py", "src/invaders/rl/sumtree.py"} <= deps  # agent -> replay -> sumtree
    assert "src/invaders/cli.py" not in deps


def test_the_random_baseline_depends_on_no_agent_code():
    deps = code_deps(REPO / "pipeline" / "baseline.py")
    assert not {f"src/invaders/rl/{m}.py" for m in ("agent", "replay", "sumtree", "model", "checkpoint", "loop")} & deps
    assert "src/invaders/compat/keras_rl2.py" not in deps
