"""The project's own source files a module runs: its import closure, read from the code (AST), never by importing it.

Two things depend on exactly that set: `dvc.yaml`'s deps (a stage re-runs when code it runs changes,
and only then; tests/base/test_dvc_deps.py keeps them equal) and a training checkpoint's fingerprint (a killed
run resumes unless code the train stage runs has changed). Imports inside functions count: they run too.
Importing `invaders.a.b` runs `invaders/__init__.py` and `invaders/a/__init__.py` first, so they count too.
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent  # src/invaders
ROOT = PACKAGE.parent  # src


def module_file(name: str) -> Path | None:
    """The file of the project module `name` (dotted, e.g. `invaders.rl.agent`), or None if there is none."""
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported(path: Path) -> set[str]:
    """The project modules a file imports, anywhere in it, as dotted names."""
    found = set()
    for node in ast.walk(ast.parse(Path(path).read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "invaders":
            found.add(node.module)
            # `from invaders.rl import checkpoint`: the name may be a module of the package.
            found |= {f"{node.module}.{a.name}" for a in node.names if module_file(f"{node.module}.{a.name}")}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "invaders"}
    return {name for name in found if module_file(name)}


def _with_parents(name: str) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def closure(path: Path) -> list[Path]:
    """Every project file that importing (or running) the file at `path` runs, sorted; `path` itself
    is included if it is part of the package."""
    seen: set[str] = set()
    todo = set().union(*(_with_parents(n) for n in imported(path)))
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for found in imported(module_file(name)):
            todo |= _with_parents(found) - seen
    files = {module_file(name) for name in seen}
    if Path(path).resolve().is_relative_to(PACKAGE):
        files.add(Path(path).resolve())
    return sorted(files)


def digest(paths: list[Path]) -> str:
    """SHA-256 of the files' names (relative to `src/`) and contents, in the given order."""
    h = hashlib.sha256()
    for path in paths:
        h.update(Path(path).resolve().relative_to(ROOT).as_posix().encode() + b"\0" + Path(path).read_bytes())
    return h.hexdigest()
