"""Checkpoints by the thousand (tests/fuzz.py): cut, bytes changed, random bytes, and files whose trailer
is right but whose bytes are no checkpoint's. `latest` never raises: a damaged file is skipped with a
one-line warning and the good one before it is used; a changed file is never taken for a good one."""


import numpy as np
import pytest
from fuzz import cases, check, checkpoint_files, failed, npy, npz, trailer
from hypothesis import given

from invaders.rl import checkpoint

pytestmark = pytest.mark.unit


def save(directory, step):
    return checkpoint.save(directory, step, checkpoint.nest("agent", {"w": np.arange(10, dtype=np.float32)}),
                           {"fingerprint": "f"})


def test_damaged_checkpoints_are_skipped_with_one_line(tmp_path, capsys):
    older = save(tmp_path, 100)
    newest = save(tmp_path, 200)
    good = newest.read_bytes()

    @cases(300)
    @given(checkpoint_files(good))
    def one(data: bytes):
        newest.write_bytes(data)
        capsys.readouterr()
        found = check("checkpoint", lambda: checkpoint.latest(tmp_path, "f"), describe=lambda: repr(data[:100]))
        err = capsys.readouterr().err
        assert all(line.startswith(("warning: ", "note: ")) for line in err.splitlines()), err
        if data == good:
            assert found.path == newest
        elif data[:-48] == good[:-48] or data[-16:] != checkpoint.MAGIC or found is None or found.path != newest:
            # unchanged content with a damaged trailer, or damage the checksum caught: the older one
            assert found is None or found.path == older
            assert found is None or f"{newest}: unusable checkpoint (" in err or "made with other params" in err

    one()
    failed("checkpoint")


# Found by the fuzzing: right trailer, wrong content. Each raised out of `latest` (a traceback) before.
@pytest.mark.parametrize("data, reason", [
    (trailer(npy(np.arange(3))), "not a checkpoint's arrays ('numpy.ndarray' object does not support the context"),
    (trailer(npz(__meta__=np.array("[]"))), "its metadata is a list, not a mapping"),
    (trailer(npz(__meta__=np.array("null"))), "its metadata is a NoneType, not a mapping"),
    (trailer(b"PK\x03\x04" + npz(x=np.arange(3))[4:].replace(b"{'descr'", b"{'descr' (")), "not a checkpoint's arrays ("),
])
def test_a_file_with_a_right_trailer_but_no_checkpoint_inside_is_skipped(tmp_path, capsys, data, reason):
    save(tmp_path, 100)
    newest = tmp_path / "step-000000200.ckpt"
    newest.write_bytes(data)
    with pytest.raises(checkpoint.CorruptCheckpoint, match=reason.replace("(", r"\(").replace(")", r"\)")):
        checkpoint.load(newest)
    assert checkpoint.latest(tmp_path, "f").meta["step"] == 100
    assert f"{newest}: unusable checkpoint ({reason}" in capsys.readouterr().err


def test_a_header_numpy_refuses_in_several_lines_is_one_warning_line(tmp_path, capsys):
    """Found by the fuzzing: byte 71 of a checkpoint (an array header's length) made 39 and the trailer
    checksummed again; numpy's refusal has three lines, and the warning quoted all of them."""
    save(tmp_path, 100)
    newest = save(tmp_path, 200)
    body = bytearray(newest.read_bytes()[:-48])
    body[71] = 39
    newest.write_bytes(trailer(bytes(body)))
    assert checkpoint.latest(tmp_path, "f").meta["step"] == 100
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"warning: {newest}: unusable checkpoint (not a checkpoint's arrays ("), err
