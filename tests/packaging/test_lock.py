"""One requirements.lock for CPython 3.11, 3.12 and 3.13 (pyproject.toml's requires-python): its entries with a
marker (`; python_full_version >= '3.12'`) apply to some of them only. scripts/check-lock.py has pip resolve the
whole lock, dependencies included, as CPython 3.12 and 3.13 on manylinux x86_64 from wheels only (`make check-lock`
downloads them all)."""

import importlib.util
import re
import subprocess
import sys
import tomllib

import pytest
import yaml
from conftest import REPO
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

LOCK = REPO / "requirements.lock"
CHECK_LOCK = REPO / "scripts" / "check-lock.py"
PYTHONS = ["3.11", "3.12", "3.13"]


def check_lock():
    spec = importlib.util.spec_from_file_location("check_lock", CHECK_LOCK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


@pytest.mark.unit
def test_pyproject_the_makefile_and_the_pull_request_matrix_name_the_same_pythons():
    allowed = SpecifierSet(pyproject()["project"]["requires-python"])
    assert [f"3.{minor}" for minor in range(30) if f"3.{minor}" in allowed] == PYTHONS
    supported = re.search(r"^SUPPORTED := (.*)$", (REPO / "Makefile").read_text(), re.M).group(1).split()
    assert sorted(supported) == PYTHONS and supported == sorted(supported, reverse=True)  # the newest first
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "pull-request.yml").read_text())
    assert workflow["jobs"]["test"]["strategy"]["matrix"]["python"] == PYTHONS


@pytest.mark.unit
@pytest.mark.parametrize("python", PYTHONS)
def test_the_lock_pins_every_dependency_once_within_its_range(python):
    """On each Python: each entry an exact pin, no package twice, and each of pyproject.toml's dependencies (the dev
    extras too) pinned within its range: the lock is `make lock`'s of the pyproject.toml beside it."""
    pinned = check_lock().pins(LOCK, check_lock().environment(python))  # raises on a range or a second pin
    project = pyproject()["project"]
    for line in project["dependencies"] + project["optional-dependencies"]["dev"]:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert name in pinned, f"{name} is not in {LOCK.name} for Python {python}: make lock"
        assert pinned[name] in req.specifier, f"{name}=={pinned[name]} is outside {req.specifier}: make lock"


def run_check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CHECK_LOCK), *args], capture_output=True, text=True, timeout=900)


@pytest.mark.e2e
def test_the_lock_resolves_from_wheels_on_python_3_12_and_3_13():
    """pip's dry run (on pypi.org it reads each wheel's metadata file, not the wheel; an index without those
    downloads the wheels, 1.1 GB for each version, kept nowhere)."""
    result = run_check("3.12", "3.13")
    assert result.returncode == 0, result.stdout + result.stderr
    for python in ("3.12", "3.13"):
        assert re.search(rf"^Python {python}: \d+ packages resolve from wheels", result.stdout, re.M), result.stdout


@pytest.mark.e2e
def test_the_check_fails_on_a_dependency_left_out_of_the_lock_and_on_a_pin_without_a_wheel(tmp_path):
    """Tiny locks: python-dateutil without its dependency six; numpy 1.26.4, which has wheels for 3.12, not 3.13."""
    unpinned = tmp_path / "unpinned.lock"
    unpinned.write_text("python-dateutil==2.9.0.post0\n")
    result = run_check("--lock", str(unpinned), "3.12")
    assert result.returncode == 1
    assert re.fullmatch(r"error: Python 3.12: six \S+ is needed on Python 3.12 but not pinned in unpinned.lock\n",
                        result.stderr), result.stderr

    no_wheel = tmp_path / "no-wheel.lock"
    no_wheel.write_text("numpy==1.26.4\n")
    result = run_check("--lock", str(no_wheel), "3.12", "3.13")
    assert result.returncode == 1
    assert re.search(r"^Python 3.12: 1 package resolve from wheels", result.stdout, re.M), result.stdout
    [line] = result.stderr.splitlines()
    assert line.startswith("error: Python 3.13: pip could not resolve no-wheel.lock from wheels: ")
    assert "No matching distribution found for numpy==1.26.4" in line

