"""`dvc.yaml` lists, for every stage, exactly the project modules its script imports (transitively):
a change to any code a stage runs re-runs it, and a change elsewhere does not."""

import ast
from pathlib import Path

import yaml
from conftest import REPO

PACKAGE = REPO / "src" / "invaders"


def imported_modules(path: Path) -> set[str]:
    """Names of the `invaders` modules a file imports, at any depth (imports inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "invaders":
            if node.module == "invaders":  # from invaders import files, checkpoint
                found |= {a.name for a in node.names if (PACKAGE / f"{a.name}.py").exists()}
            else:
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("invaders.")}
    return found


def closure(script: Path) -> set[str]:
    seen, todo = set(), imported_modules(script)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo |= imported_modules(PACKAGE / f"{name}.py")
    return {f"src/invaders/{name}.py" for name in seen} | {"src/invaders/__init__.py"}


def test_each_stage_depends_on_exactly_the_modules_it_imports():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        script = stage["cmd"].split()[-1]
        listed = {d for d in stage["deps"] if d.startswith("src/")}
        assert script in stage["deps"], name
        assert listed == closure(REPO / script), (
            f"stage {name}: missing {sorted(closure(REPO / script) - listed)}, extra {sorted(listed - closure(REPO / script))}")


def test_the_import_scan_sees_nested_and_package_imports(tmp_path):
    script = tmp_path / "stage.py"
    script.write_text("from invaders import files\n\ndef main():\n    from invaders.agent import seed_everything\n"
                      "    import invaders.model\n")
    assert imported_modules(script) == {"files", "agent", "model"}
    assert "src/invaders/sumtree.py" in closure(script)  # agent -> replay -> sumtree
