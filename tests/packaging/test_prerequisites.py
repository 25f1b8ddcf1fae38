"""scripts/test-prerequisites.sh, which `make test` and .ci/run call first: missing Debian packages are installed
(root: apt-get; a user: `sudo -n apt-get`), or, where neither can be, named in one line with the command that
installs them, exit 2, before any test runs. The refusal as an unprivileged user, with the real script."""

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import BIN, REPO

pytestmark = pytest.mark.unit

SCRIPT = REPO / "scripts" / "test-prerequisites.sh"
DPKG_STATUS = Path("/var/lib/dpkg/status")


@pytest.fixture
def place():
    """A directory the `nobody` user can read (not under pytest's tmp dir, whose parents are 0700), with a copy of
    the script, an empty bin/ for PATH (no sudo, no apt-get) and stand-ins for what the script looks for."""
    root = Path(tempfile.mkdtemp(prefix="prerequisites-", dir="/tmp"))
    try:
        shutil.copy(SCRIPT, root / SCRIPT.name)
        (root / "bin").mkdir()
        initdb = root / "postgresql" / "15" / "bin" / "initdb"
        initdb.parent.mkdir(parents=True)
        for executable in (initdb, root / "chromium"):
            executable.write_text("#!/bin/sh\n")
        for path in [root, *root.rglob("*")]:
            path.chmod(0o755)
        yield root
    finally:
        shutil.rmtree(root)


def run_unprivileged(place: Path, *packages: str, chromium: str, postgresql: str) -> subprocess.CompletedProcess:
    env = ["/usr/bin/env", "-i", f"PATH={place / 'bin'}", f"INVADERS_CHROMIUM={chromium}",
           f"INVADERS_POSTGRESQL_LIB={postgresql}"]
    as_user = [shutil.which("runuser") or "/usr/sbin/runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
    return subprocess.run([*as_user, *env, shutil.which("bash"), str(place / SCRIPT.name), *packages],
                          capture_output=True, text=True, timeout=60)


def dpkg_state() -> str:
    return hashlib.sha256(DPKG_STATUS.read_bytes()).hexdigest() if DPKG_STATUS.exists() else ""


@pytest.mark.parametrize("missing", [["chromium"], ["chromium", "postgresql"], ["postgresql"]])
def test_missing_packages_are_named_with_their_install_command_and_nothing_is_installed(place, missing):
    before = dpkg_state()
    result = run_unprivileged(place, chromium=str(place / ("none" if "chromium" in missing else "chromium")),
                              postgresql=str(place / ("none" if "postgresql" in missing else "postgresql")))
    packages = " ".join(missing)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.splitlines() == [f"error: the tests need the Debian packages {packages}; install them with:"
                                          f" sudo apt-get update && sudo apt-get install -y {packages}"]
    assert dpkg_state() == before and not (place / "none").exists()


def test_nothing_to_do_when_everything_is_there_or_only_what_is_asked_for(place):
    found = run_unprivileged(place, chromium=str(place / "chromium"), postgresql=str(place / "postgresql"))
    assert (found.returncode, found.stdout, found.stderr) == (0, "", "")
    chromium_only = run_unprivileged(place, "chromium", chromium=str(place / "chromium"),
                                     postgresql=str(place / "none"))  # make ui-screenshots
    assert (chromium_only.returncode, chromium_only.stdout, chromium_only.stderr) == (0, "", "")


def test_the_script_and_ci_pass_shellcheck_and_ci_calls_the_script():
    scripts = [SCRIPT, REPO / ".ci" / "run"]
    result = subprocess.run([str(BIN / "shellcheck"), *map(str, scripts)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout
    assert SCRIPT.stat().st_mode & 0o111 and SCRIPT.read_text().startswith("#!/usr/bin/env bash\n")
    assert "scripts/test-prerequisites.sh" in (REPO / ".ci" / "run").read_text()
