"""The docs (README.md, docs/, the site `make docs` builds) against the code: the site builds with every link
and page in place, every `invaders` command and flag shown exists in the CLI, every params key shown exists
in Params, every `make` target shown exists, the params reference gives every default, and every bad-input
row names tests that exist."""

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from invaders.cli import _parser
from invaders.config import Params

pytestmark = pytest.mark.unit

PAGES = sorted((REPO / "docs").glob("*.md")) + [REPO / "README.md", REPO / "CHANGELOG.md"]
SECTIONS = set(Params.model_fields) - {"seed"}
# Names shown in the docs that look like params keys but are the promote stage's MLflow tags.
PROMOTE_TAGS = {"promote.decision", "promote.reason", "promote.p_value_baseline", "promote.p_value_champion",
                "promote.previous_champion", "promote.version"}


def code_spans(text: str) -> list[str]:
    """Every fenced block's lines and every inline code span of a markdown text."""
    spans = []
    for block in re.findall(r"^```[^\n]*\n(.*?)^```", text, re.M | re.S):
        spans += block.splitlines()
    spans += re.findall(r"(?<!`)`([^`\n]+)`(?!`)", re.sub(r"^```.*?^```", "", text, flags=re.M | re.S))
    return spans


def docs_code() -> list[tuple[str, str]]:
    return [(page.name, span) for page in PAGES for span in code_spans(page.read_text())]


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_the_site_builds_strictly(tmp_path):
    """`make docs` runs this: a broken link, a missing page or an anchor that does not exist fails it."""
    result = subprocess.run([str(Path(sys.executable).parent / "mkdocs"), "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    built = {p.relative_to(tmp_path / "site").as_posix() for p in (tmp_path / "site").rglob("index.html")}
    pages = {"index.html"} | {f"{p.stem}/index.html" for p in (REPO / "docs").glob("*.md") if p.stem != "index"}
    assert pages <= built, pages - built


def test_every_invaders_command_and_flag_shown_exists():
    commands = subcommands(_parser())
    seen = 0
    for page, span in docs_code():
        for shown in re.findall(r"(?:^|[\s(;&|/])invaders (\w[\w-]*)([^#|;&]*)", span):
            name, rest = shown
            assert name in commands, f"{page}: `invaders {name}` is not a command ({sorted(commands)})"
            parser = commands[name]
            if name == "users":
                sub = rest.split()[0]
                assert sub in subcommands(parser), f"{page}: `invaders users {sub}` is not a command"
                parser = subcommands(parser)[sub]
            options = {o for a in parser._actions for o in a.option_strings}
            for flag in re.findall(r"(?<![\w-])(--[a-z][\w-]*)", rest):
                assert flag in options, f"{page}: `invaders {name} {flag}` is not an option ({sorted(options)})"
            seen += 1
    assert seen >= 20  # the docs show the commands: a broken pattern above would find none


def test_every_params_key_shown_exists():
    keys = set(Params().flat())
    prefixes = {k.rsplit(".", i)[0] for k in keys for i in range(1, k.count(".") + 1)}
    seen = 0
    for page, span in docs_code():
        if span.lstrip().startswith("error:"):  # an error message quotes the bad input it names
            continue
        for key in re.findall(r"(?<![\w./-])([a-z]+(?:\.[a-z_0-9]+)+)(?![\w/(-]|\.\w)", span):
            if key.split(".")[0] not in SECTIONS or key.endswith((".py", ".db", ".lock")):
                continue  # not a params section, or a file name
            seen += key in keys
            assert key in keys | prefixes | PROMOTE_TAGS, f"{page}: `{key}` is not a params key"
    assert seen >= 50


def test_every_script_option_shown_exists():
    """The scripts' options, as the docs show them, are ones the scripts take (their option parsing)."""
    seen = 0
    for page, span in docs_code():
        for script, rest in re.findall(r"(scripts/(?:retrain|mlflow-server)\.sh)([^#|;&]*)", span):
            parsing = (REPO / script).read_text()
            for flag in re.findall(r"(?<![\w-])(--[a-z][\w-]*)", rest):
                assert re.search(rf"(^|[\s|]){flag}[|)]", parsing, re.M), f"{page}: `{script} {flag}` is not an option"
                seen += 1
    assert seen >= 10


def test_every_ray_node_kind_shown_exists():
    """`scripts/ray-node.sh KIND` as the docs show it: a kind the script takes (the rest is `ray start`'s)."""
    kinds = set(re.search(r"^  ([\w|]+)\) ;;$", (REPO / "scripts" / "ray-node.sh").read_text(), re.M).group(1).split("|"))
    assert kinds == {"head", "worker"}
    shown = [kind for _, span in docs_code() for kind in re.findall(r"scripts/ray-node\.sh (\w[\w|-]*)", span)]
    assert len(shown) >= 3
    for kind in shown:
        assert set(kind.split("|")) <= kinds, f"`scripts/ray-node.sh {kind}` is not a node kind ({sorted(kinds)})"


def test_every_make_target_shown_exists():
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, re.M))
    for page, span in docs_code():
        for target in re.findall(r"(?:^|[\s(;&|])make ([a-z][\w-]*)", span):
            assert target in targets, f"{page}: `make {target}` is not a target ({sorted(targets)})"


def test_the_params_reference_gives_every_param_with_its_default():
    page = (REPO / "docs" / "params.md").read_text()
    rows = {line.split("|")[1].strip().strip("`"): line.split("|")[2].strip().strip("`")
            for line in page.splitlines() if line.startswith("| `")}
    for key, value in Params().flat().items():
        assert key in rows, f"docs/params.md lacks {key}"
        shown = str(value).lower() if isinstance(value, bool) else str(value)
        assert rows[key] == shown, f"docs/params.md gives {key} = {rows[key]}, the code {shown}"
    assert set(rows) == set(Params().flat()), set(rows) - set(Params().flat())


def test_every_bad_input_row_names_tests_that_exist():
    page = (REPO / "docs" / "errors.md").read_text()
    rows = [line for line in page.splitlines() if line.startswith("| ") and "`test_" in line]
    assert len(rows) >= 12
    for row in rows:
        module = None
        for ref in re.findall(r"`(test_\w+\.py)?::(\w+)`", row.split("|")[3]):
            module = ref[0] or module
            found = list((REPO / "tests").glob(f"*/{module}"))  # tests/<layer>/test_*.py
            assert len(found) == 1, module
            assert re.search(rf"^def {ref[1]}\(", found[0].read_text(), re.M), (module, ref[1])


def test_the_readme_is_one_screen_deep():
    assert len((REPO / "README.md").read_text().splitlines()) <= 250
