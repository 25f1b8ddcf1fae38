"""The checkpoint's fingerprint end to end: training killed after its first checkpoint resumes from it
after an edit outside the train stage's import closure (`invaders/cli.py`), and starts afresh after an
edit inside it (`invaders/rl/replay.py`). The stage scripts run the project copy's own code
(PYTHONPATH is the copy's `src`), so the edits are those the code sees."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO, TINY, make_project, merge, run, tool_env

from invaders import sources

pytestmark = pytest.mark.e2e


def train_until_first_checkpoint_then_kill(root: Path, log: Path) -> None:
    checkpoints = root / "data" / "train" / "checkpoints"
    with open(log, "w") as out:
        trainer = subprocess.Popen([sys.executable, "pipeline/train.py"], cwd=root, stdout=out,
                                   stderr=subprocess.STDOUT, env=tool_env(PYTHONPATH=str(root / "src")),
                                   start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while not list(checkpoints.glob("step-*.ckpt")):
            assert trainer.poll() is None, f"training ended before its first checkpoint:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "no checkpoint within 10 minutes"
            time.sleep(0.05)
    finally:
        os.killpg(trainer.pid, signal.SIGKILL)
        trainer.wait(timeout=60)


def add_comment(path: Path) -> None:
    path.write_text(path.read_text() + "\n# an edit\n")


def test_only_an_edit_inside_the_train_closure_discards_the_checkpoint(tmp_path):
    closure = {p.relative_to(REPO).as_posix() for p in sources.closure(REPO / "pipeline" / "train.py")}
    assert "src/invaders/cli.py" not in closure and "src/invaders/rl/replay.py" in closure

    root = tmp_path / "project"
    root.mkdir()
    make_project(root, merge(yaml.safe_load((REPO / "params.yaml").read_text()), TINY), repro=False)
    own_code = {"PYTHONPATH": str(root / "src")}
    run([sys.executable, "pipeline/build.py"], root, **own_code)

    # Outside the closure: the checkpoint is still good.
    train_until_first_checkpoint_then_kill(root, tmp_path / "train-1.log")
    add_comment(root / "src" / "invaders" / "cli.py")
    resumed = run([sys.executable, "pipeline/train.py"], root, **own_code)
    assert "train: resuming from the checkpoint at step" in resumed.stdout, resumed.stdout[-3000:]
    assert "not resuming" not in resumed.stderr, resumed.stderr[-3000:]
    assert (root / "data" / "train" / "model.keras").is_file()

    # Inside the closure: the same kind of edit makes the checkpoint another code's.
    train_until_first_checkpoint_then_kill(root, tmp_path / "train-2.log")
    add_comment(root / "src" / "invaders" / "rl" / "replay.py")
    fresh = run([sys.executable, "pipeline/train.py"], root, **own_code)
    assert "was made with other params, start network or code; not resuming from it" in fresh.stderr, \
        fresh.stderr[-3000:]
    assert "resuming from the checkpoint" not in fresh.stdout, fresh.stdout[-3000:]
