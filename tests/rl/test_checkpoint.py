"""Checkpoint files: round trip, corruption caught by the trailer and checksum, the fallback to an earlier
file, and resuming without holding the file in memory."""

import tracemalloc

import numpy as np
import pytest
from conftest import merge

from invaders.rl import checkpoint
from invaders import files
from invaders.config import parse_params

pytestmark = pytest.mark.unit

BIG = 200 * 2**20  # a replay memory's frames, scaled down


def save(directory, step, fingerprint="f", frames=None):
    arrays = checkpoint.nest("agent", {"w": np.arange(10, dtype=np.float32)})
    if frames is not None:
        arrays.update(checkpoint.nest("memory", {"frames": frames}))
    return checkpoint.save(directory, step, arrays, {"fingerprint": fingerprint})


def test_round_trip_and_only_the_newest_two_kept(tmp_path):
    for step in (100, 200, 300):
        save(tmp_path, step)
    assert [p.name for p in sorted(tmp_path.iterdir())] == ["step-000000200.ckpt", "step-000000300.ckpt"]
    found = checkpoint.latest(tmp_path, "f")
    assert found.path.name == "step-000000300.ckpt" and found.meta["step"] == 300
    with found.arrays() as arrays:
        np.testing.assert_array_equal(checkpoint.part(arrays, "agent")["w"], np.arange(10, dtype=np.float32))


@pytest.mark.parametrize("damage, reason", [
    (lambda data: data[: len(data) // 2], "truncated: no trailer"),
    (lambda data: data[:100] + bytes([data[100] ^ 1]) + data[101:], "checksum mismatch"),
])
def test_a_damaged_newest_file_is_skipped_with_a_warning(tmp_path, capsys, damage, reason):
    save(tmp_path, 100)
    newest = save(tmp_path, 200)
    newest.write_bytes(damage(newest.read_bytes()))
    with pytest.raises(checkpoint.CorruptCheckpoint, match=reason):
        checkpoint.load(newest)
    assert checkpoint.latest(tmp_path, "f").meta["step"] == 100
    assert f"{newest}: unusable checkpoint ({reason}); trying an earlier one" in capsys.readouterr().err


def test_checkpoints_of_other_params_or_code_are_not_resumed(tmp_path, capsys):
    save(tmp_path, 100, fingerprint="other")
    assert checkpoint.latest(tmp_path, "f") is None
    assert "was made with other params, start network or code" in capsys.readouterr().err


def test_checking_and_restoring_never_hold_the_whole_file(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, BIG, dtype=np.uint8)
    path = save(tmp_path, 100, frames=frames)
    del frames
    tracemalloc.start()
    try:
        found = checkpoint.load(path)  # verifies the checksum of all 200 MB
        checking = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        with found.arrays() as arrays:
            weights = checkpoint.part(arrays, "agent")  # the other part stays on disk
        restoring = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        with found.arrays() as arrays:
            memory = checkpoint.part(arrays, "memory")
        whole = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert weights["w"].shape == (10,) and memory["frames"].nbytes == BIG
    assert checking < 4 * files.BLOCK and restoring < 2**20  # a few hashing blocks, never the file
    assert BIG <= whole < 1.1 * BIG  # one copy: the array itself


def test_fingerprint_changes_with_training_params_start_network_and_code(tmp_path, default_params):
    """A checkpoint resumes only the run that made it: same training params, start network and code."""
    model = tmp_path / "model.keras"
    model.write_bytes(b"network A")
    params = parse_params(default_params)
    base = checkpoint.fingerprint(params, model, "code A")
    assert checkpoint.fingerprint(params, model, "code A") == base
    for override in ({"agent": {"learning_rate": 0.0002}}, {"agent": {"n_step": 1}}, {"train": {"eval_episodes": 5}},
                     {"env": {"sticky_action_prob": 0.0}}, {"seed": 1}, {"evaluate": {"parallel_episodes": 4}}):
        assert checkpoint.fingerprint(parse_params(merge(default_params, override)), model, "code A") != base, override
    # Evaluation (but for how many episodes validation plays at a time), promotion and tracking settings do not
    # change what training computes.
    for override in ({"evaluate": {"episodes": 5}}, {"promote": {"alpha": 0.01}}, {"mlflow": {"experiment": "x"}}):
        assert checkpoint.fingerprint(parse_params(merge(default_params, override)), model, "code A") == base, override
    model.write_bytes(b"network B")
    assert checkpoint.fingerprint(params, model, "code A") != base
    model.write_bytes(b"network A")
    assert checkpoint.fingerprint(params, model, "code B") != base


def test_a_checkpoint_of_another_run_is_not_resumed(tmp_path, capsys):
    save(tmp_path, 100, fingerprint="mine")
    save(tmp_path, 200, fingerprint="theirs")
    found = checkpoint.latest(tmp_path, "mine")
    assert found.meta["step"] == 100
    assert "made with other params, start network or code; not resuming from it" in capsys.readouterr().err
    assert checkpoint.latest(tmp_path, "nobody's") is None
