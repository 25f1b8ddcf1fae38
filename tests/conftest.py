import contextlib
import copy
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]

# Small enough to train, evaluate and track in seconds; everything else as in params.yaml.
TINY = {
    "env": {"max_episode_steps": 150},
    "baseline": {"episodes": 2},
    "agent": {"memory_limit": 1000, "warmup_steps": 100, "epsilon": {"anneal_steps": 150}},
    "train": {"steps": 300, "log_every": 100, "checkpoint_every": 100, "eval_every": 100, "eval_episodes": 1},
    "evaluate": {"episodes": 2},
}


def merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@pytest.fixture
def default_params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


@pytest.fixture
def tiny_params(default_params) -> dict:
    return merge(default_params, TINY)


BIN = Path(sys.executable).parent


def tool_env(**extra: str) -> dict[str, str]:
    """The venv first on PATH, the project's own MLflow store (unless `extra` names another) and a git identity."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("GITHUB_STEP_SUMMARY", None)
    env.update(extra)
    env["MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"] = "1"  # the tiny run is over in seconds
    for who in ("AUTHOR", "COMMITTER"):
        env.setdefault(f"GIT_{who}_NAME", "tests")
        env.setdefault(f"GIT_{who}_EMAIL", "tests@invaders.invalid")
    return env


def run(cmd: list[str], cwd: Path, check: bool = True, **env: str) -> subprocess.CompletedProcess:
    """`cmd` in `cwd` with `tool_env()`."""
    result = subprocess.run(cmd, cwd=cwd, env=tool_env(**env), capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def ran_stages(output: str) -> list[str]:
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")]


def make_project(root: Path, params: dict, repro: bool = True) -> subprocess.CompletedProcess | None:
    """A copy of the repo with `params`, committed to a fresh git repo; returns its first `dvc repro`."""
    for name in ("dvc.yaml", "pipeline", "src", "presets", "scripts", ".dvc", ".gitignore", "params.yaml"):
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__", "tmp", "cache", "config.local"))
        else:
            shutil.copy(src, root / name)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], root)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-qm", "tiny"], root)
    return run(["dvc", "repro"], root) if repro else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(cmd: list[str], cwd: Path, url: str, log: Path):
    """`cmd`, a server at `url`, in a process group of its own with its output in `log`, from the
    moment `url/health` answers; afterwards the whole group is stopped."""
    with open(log, "w") as out:
        process = subprocess.Popen(cmd, cwd=cwd, env=tool_env(), stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        deadline = time.monotonic() + 300  # a loaded 2-core machine can take minutes to start MLflow
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2)
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, \
                    f"{' '.join(cmd)} did not start:\n{log.read_text()[-3000:]}"
                time.sleep(0.5)
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)


# `make test` runs the modules on two workers (pytest-xdist, --dist loadscope: a module's tests and
# its fixtures stay on one worker). Workers take modules in collection order, so the longest go first
# and the short ones fill in around them.
LONGEST_FIRST = ("test_no_secret.py", "test_team_server.py", "test_sweep.py", "test_pipeline.py",
                 "test_reproducibility.py", "test_reproducibility_quantile.py", "test_retrain.py", "test_portable.py")


# Every test says what it needs (pyproject.toml registers these; `make test-fast` runs `-m unit`).
KINDS = ("unit", "e2e", "server", "cluster", "browser")


def pytest_collection_modifyitems(items):
    unmarked = [item.nodeid for item in items if not any(item.get_closest_marker(kind) for kind in KINDS)]
    if unmarked:
        raise pytest.UsageError(f"tests without one of the marks {', '.join(KINDS)}: {', '.join(unmarked)}")

    def rank(item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)
    items.sort(key=rank)  # stable: the order within a module is kept


def pytest_terminal_summary(terminalreporter):
    """How many cases each fuzz target tried, and how many failed (tests/fuzz.py; `make fuzz` runs thousands)."""
    fuzz = sys.modules.get("fuzz")
    if fuzz is not None and fuzz.TALLY:
        terminalreporter.section("fuzz cases")
        fuzz.summary(terminalreporter.write_line)
