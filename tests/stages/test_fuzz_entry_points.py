"""A sample of the fuzz cases (tests/fuzz.py) through the real entry points: the build stage under
`dvc repro` in a project copy, `invaders sweep`, `invaders play --model`. Each case the loader refuses
in-process must end there with exit 2 (the stage's, which DVC reports), that one line on stderr, no
traceback, and no output created or changed."""

import os
import shutil
from contextlib import contextmanager

import pytest
import yaml
from conftest import BIN, REPO, TINY, make_project, merge, run
from fuzz import model_files, params_documents, sweep_documents
from hypothesis import Phase, assume, given, settings

from invaders.config import load_params
from invaders.errors import UserError
from invaders.rl.model import load_network

pytestmark = pytest.mark.e2e

SAMPLE = settings(max_examples=4, phases=[Phase.generate])  # each case is a process or two: a sample


@contextmanager
def inside(path):
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def files_of(root, skip=(".dvc", ".git")):
    return {p.relative_to(root): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and not set(p.relative_to(root).parts) & set(skip)}


def refused(load, *args) -> str:
    try:
        load(*args)
    except UserError as exc:
        return str(exc)
    assume(False)  # accepted: nothing to refuse at the entry point


def test_bad_params_under_dvc_repro(tmp_path):
    make_project(tmp_path, merge(yaml.safe_load((REPO / "params.yaml").read_text()), TINY), repro=False)
    run(["dvc", "repro", "build"], tmp_path)
    good = (tmp_path / "params.yaml").read_bytes()
    before = files_of(tmp_path)

    @SAMPLE
    @given(params_documents())
    def one(document: bytes):
        (tmp_path / "params.yaml").write_bytes(document)
        with inside(tmp_path):
            message = refused(load_params, "params.yaml")
        try:
            # -f: a stage whose own params did not change is skipped (exit 0), however bad the others are
            done = run(["dvc", "repro", "-f", "build"], tmp_path, check=False)
        finally:
            (tmp_path / "params.yaml").write_bytes(good)
        assert done.returncode != 0 and "Traceback" not in done.stderr + done.stdout, done.stderr[-2000:]
        if "Running stage 'build'" in done.stdout:  # DVC read the params and ran the stage: its one line, exit 2
            assert f"error: {message}\n" in done.stderr and "exited with 2" in done.stderr, done.stderr[-2000:]
        else:  # DVC itself could not read params.yaml (not YAML): its own error, and the stage never ran
            assert "ERROR:" in done.stderr and "params.yaml" in done.stderr, done.stderr[-2000:]
        assert files_of(tmp_path) == before

    one()


def test_bad_sweep_files_through_invaders_sweep(tmp_path):
    shutil.copytree(REPO / "presets", tmp_path / "presets")
    (tmp_path / "sweeps").mkdir()
    before = files_of(tmp_path)

    @SAMPLE
    @given(sweep_documents("presets/smoke.yaml"))
    def one(document: bytes):
        from invaders.sweep.spec import load

        (tmp_path / "sweeps" / "fuzz.yaml").write_bytes(document)
        with inside(tmp_path):
            message = refused(load, "sweeps/fuzz.yaml")
        done = run([str(BIN / "invaders"), "sweep", "sweeps/fuzz.yaml"], tmp_path, check=False,
                   RAY_USAGE_STATS_ENABLED="0")
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
        assert done.stderr.strip().splitlines()[-1] == f"error: {message}"
        (tmp_path / "sweeps" / "fuzz.yaml").unlink()
        assert files_of(tmp_path) == before

    one()


def test_bad_model_files_through_invaders_play(tmp_path):
    import tf_keras

    from invaders.rl.model import save_network

    frames = tf_keras.layers.Input(shape=(4, 84, 84), dtype="uint8")
    save_network(tf_keras.Model(frames, tf_keras.layers.Dense(6)(tf_keras.layers.Flatten()(frames))),
                 tmp_path / "good.keras")
    inp = tf_keras.Input((4,))
    tf_keras.Model(inp, tf_keras.layers.Lambda(lambda t: t * 2)(inp)).save(tmp_path / "lambda.keras")
    good, evil = (tmp_path / "good.keras").read_bytes(), (tmp_path / "lambda.keras").read_bytes()
    for name in ("good.keras", "lambda.keras"):
        (tmp_path / name).unlink()
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())

    @settings(max_examples=3, phases=[Phase.generate])
    @given(model_files(good, evil))
    def one(data: bytes):
        (tmp_path / "case.keras").write_bytes(data)
        before = files_of(tmp_path)
        with inside(tmp_path):
            message = refused(load_network, "case.keras")
        done = run([str(BIN / "invaders"), "play", "--model", "case.keras", "--video", "play.mp4"], tmp_path,
                   check=False, TF_CPP_MIN_LOG_LEVEL="3")
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
        assert done.stderr.strip().splitlines()[-1] == f"error: {message}"
        assert files_of(tmp_path) == before  # no video, nothing else

    one()

