"""The package's layers, read from the code (AST, imports inside functions count): no import cycles,
no import of a higher layer, and the light layers keep TensorFlow and the training code out.

    compat < base (config, errors, files, seeding, reproducibility, stats, sources) < rl < tracking
    < stages < sweep < ops < cli

A module may import its own layer or lower ones. `compat` is the bottom: it wraps upstream libraries and
imports nothing of the project's but itself, so even the base may use it (reproducibility asks it whether
TensorFlow has started).
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from invaders import sources

pytestmark = pytest.mark.unit

PACKAGE = sources.PACKAGE
LAYERS = ("compat", "base", "rl", "tracking", "stages", "sweep", "ops", "cli")
HEAVY_LIBRARIES = {"tensorflow", "tf_keras", "keras", "rl"}  # `rl` is keras-rl2
TRAINING_CODE = {f"invaders.rl.{name}" for name in ("agent", "model", "loop", "replay")}


def module_name(path: Path) -> str:
    parts = path.relative_to(sources.ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if "__pycache__" not in p.parts}


def layer(name: str) -> str:
    """`invaders.rl.agent` -> rl; `invaders`, `invaders.config` ... -> base; `invaders.cli` -> cli."""
    parts = name.split(".")
    if len(parts) >= 2 and parts[1] in LAYERS:
        return parts[1]
    return "base"


def imports() -> dict[str, set[str]]:
    return {name: sources.imported(path) for name, path in MODULES.items()}


def module_level_nodes(tree: ast.AST):
    """The import statements that run on importing the module (not those in functions or lambdas)."""
    todo = list(ast.iter_child_nodes(tree))
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        todo.extend(ast.iter_child_nodes(node))


def module_level_imports(path: Path) -> tuple[set[str], set[str]]:
    """(project modules, other top-level packages) the file imports at module level."""
    project, other = set(), set()
    for node in module_level_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level or not node.module:
                continue
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            names = [a.name for a in node.names]
        for name in names:
            if name.split(".")[0] == "invaders":
                project |= {n for n in _with_parents(name) if sources.module_file(n)}
            else:
                other.add(name.split(".")[0])
    return project, other


def _with_parents(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1 on the path, 2 done
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        path.append(name)
        for found in sorted(graph.get(name, ())):
            if found == name:
                continue
            if state.get(found) == 1:
                return path[path.index(found):] + [found]
            if found not in state and (cycle := visit(found)):
                return cycle
        path.pop()
        state[name] = 2
        return None

    for name in sorted(graph):
        if name not in state and (cycle := visit(name)):
            return cycle
    return None


def test_every_module_is_found_in_a_layer():
    assert "invaders.cli" in MODULES and "invaders.rl.agent" in MODULES and "invaders.tracking.outbox" in MODULES
    assert {layer(name) for name in MODULES} == set(LAYERS)


def test_no_import_cycles():
    cycle = find_cycle(imports())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_import_of_a_higher_layer():
    wrong = [f"{name} ({layer(name)}) imports {found} ({layer(found)})"
             for name, found_all in imports().items() for found in sorted(found_all)
             if LAYERS.index(layer(found)) > LAYERS.index(layer(name))]
    assert not wrong, "imports against the layer order " + " < ".join(LAYERS) + ":\n" + "\n".join(wrong)


def test_tracking_does_not_import_tensorflow_or_keras_rl2_at_module_level():
    """Also not through a project module it imports at module level."""
    level = {name: module_level_imports(path) for name, path in MODULES.items()}
    wrong = []
    for name in (n for n in MODULES if layer(n) == "tracking"):
        seen, todo, via = set(), [name], {name: [name]}
        while todo:
            current = todo.pop()
            if current in seen:
                continue
            seen.add(current)
            project, other = level[current]
            wrong += [f"{name} imports {lib} at module level (via {' -> '.join(via[current])})"
                      for lib in sorted(other & HEAVY_LIBRARIES)]
            for found in project - seen:
                via.setdefault(found, via[current] + [found])
                todo.append(found)
    assert not wrong, "\n".join(sorted(set(wrong)))


def test_tracking_and_base_do_not_import_the_training_code():
    """Anywhere, directly or through other project modules (their import closure)."""
    wrong = []
    for name, path in MODULES.items():
        if layer(name) not in ("tracking", "base"):
            continue
        direct = sources.imported(path) & TRAINING_CODE
        wrong += [f"{name} imports {found}" for found in sorted(direct)]
        reached = {module_name(p) for p in sources.closure(path)} & TRAINING_CODE
        wrong += [f"{name} imports {found} (through the modules it imports)" for found in sorted(reached - direct)]
    assert not wrong, "\n".join(wrong)


def test_the_checks_see_violations():
    """The helpers themselves: a cycle is found and reported, a function's imports count."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert layer("invaders.stats") == "base" and layer("invaders") == "base" and layer("invaders.ops.users") == "ops"
    tree = ast.parse("import tensorflow\ndef f():\n    import tf_keras\nif True:\n    import rl.agents\n")
    assert sorted(n.names[0].name for n in module_level_nodes(tree)) == ["rl.agents", "tensorflow"]


LIGHT = """
import runpy, sys
heavy = lambda: sorted({{m.split('.')[0] for m in sys.modules}} & {heavy!r})
import invaders.stages.baseline, invaders.stages.promote
print('after the import:', heavy())
sys.argv = [{script!r}, '--help']
try:
    runpy.run_path({script!r}, run_name='__main__')
except SystemExit as e:
    assert e.code in (0, None), e.code
print('after --help:', heavy())
"""


def test_baseline_and_promote_do_not_import_tensorflow():
    """Importing the stages and `python pipeline/promote.py --help` stay light (no TensorFlow)."""
    script = str(REPO / "pipeline" / "promote.py")
    code = LIGHT.format(script=script, heavy=HEAVY_LIBRARIES)
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "usage: pipeline/promote.py" in result.stdout, result.stdout
    lines = result.stdout.splitlines()
    imported = next(line for line in lines if line.startswith("after the import:"))
    helped = next(line for line in lines if line.startswith("after --help:"))
    assert imported == "after the import: []", f"importing invaders.stages.baseline and .promote imports TensorFlow: {imported}"
    assert helped == "after --help: []", f"pipeline/promote.py --help imports TensorFlow: {helped}"
    # As a user runs it, too.
    helped = subprocess.run([sys.executable, script, "--help"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert helped.returncode == 0 and "usage: pipeline/promote.py" in helped.stdout, helped.stderr[-3000:]
