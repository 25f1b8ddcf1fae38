"""Which Python the Makefile takes: the newest of python3.13, python3.12, python3.11 on PATH that runs, or
PYTHON=; one outside 3.11-3.13, or none, is refused in one line before anything is installed; a .venv made by
another Python version is rebuilt. Real make on a copy of the Makefile, with stand-in Pythons that print a version."""

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPO

pytestmark = pytest.mark.unit

MAKE = shutil.which("make")
REFUSAL = "the project needs CPython 3.11, 3.12 or 3.13: make PYTHON=/path/to/python3.X.  Stop."
TOOLS = "/usr/bin:/bin"  # with PYTHON= given: the shell's tools, whatever Pythons they hold


def fake_python(path: Path, version: str | None) -> Path:
    """Answers any `-c` with `version`; None: fails as a pyenv shim does for a version it has not activated."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho {version}\n" if version else "#!/bin/sh\necho 'pyenv: not found' >&2\nexit 127\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def project(tmp_path) -> Path:
    for name in ("Makefile", "requirements.lock", "pyproject.toml"):
        shutil.copy(REPO / name, tmp_path / name)
    return tmp_path


def make(project: Path, *args: str, path: str) -> subprocess.CompletedProcess:
    return subprocess.run([MAKE, "--no-print-directory", *args], cwd=project, env={"PATH": path},
                          capture_output=True, text=True, timeout=60)


def test_the_newest_python_that_runs_is_taken(project, tmp_path):
    bin_dir = tmp_path / "bin"
    fake_python(bin_dir / "python3.13", None)
    fake_python(bin_dir / "python3.12", "3.12")
    fake_python(bin_dir / "python3.11", "3.11")
    result = make(project, "check-python", path=str(bin_dir))
    assert (result.returncode, result.stdout, result.stderr) == (0, "python3.12: Python 3.12\n", "")


def test_no_python_is_refused_in_one_line(project, tmp_path):
    result = make(project, "install", path=str(tmp_path / "empty"))
    assert result.returncode == 2
    assert refusal(result) == f"no python3.13, python3.12 or python3.11 that runs is on PATH; {REFUSAL}"
    assert not (project / ".venv").exists()


@pytest.mark.parametrize("version", ["3.10", "3.14"])
def test_a_python_outside_3_11_to_3_13_is_refused_before_anything_is_installed(project, tmp_path, version):
    python = fake_python(tmp_path / "bin" / f"python{version}", version)
    for target in ("install", "test", "lock"):
        result = make(project, target, f"PYTHON={python}", path=TOOLS)
        assert result.returncode == 2
        assert refusal(result) == f"PYTHON={python} is Python {version}; {REFUSAL}", target
        assert result.stdout == "" and not (project / ".venv").exists()


def test_a_venv_made_by_another_python_is_rebuilt(project, tmp_path):
    python = fake_python(tmp_path / "bin" / "python3.11", "3.11")
    fake_python(project / ".venv" / "bin" / "python", "3.12")
    result = make(project, "check-python", f"PYTHON={python}", path=TOOLS)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"make: .venv was made by Python 3.12, not 3.11 ({python}): rebuilding .venv", f"{python}: Python 3.11"]
    assert not (project / ".venv").exists()
    (project / ".venv" / "bin").mkdir(parents=True)  # a venv whose Python no longer runs
    result = make(project, "check-python", f"PYTHON={python}", path=TOOLS)
    assert "make: .venv was made by Python a Python that no longer runs, not 3.11" in result.stdout


def test_make_test_checks_the_debian_packages_first_and_test_fast_does_not(project, tmp_path):
    python = fake_python(tmp_path / "bin" / "python3.11", "3.11")
    full = make(project, "-n", "test", f"PYTHON={python}", path=str(tmp_path / "empty")).stdout.splitlines()
    assert full[0] == "scripts/test-prerequisites.sh" and "pytest" in full[-1], full
    fast = make(project, "-n", "test-fast", f"PYTHON={python}", path=str(tmp_path / "empty")).stdout
    assert "pytest -m unit" in fast and "test-prerequisites" not in fast


def refusal(result: subprocess.CompletedProcess) -> str:
    """The one line on stderr, less make's `Makefile:N: *** `."""
    [line] = result.stderr.splitlines()
    prefix, _, message = line.partition(": *** ")
    assert prefix.startswith("Makefile:"), line
    return message
