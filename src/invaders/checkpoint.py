"""Training checkpoints: the whole state of a run, in one checksummed file, to continue it exactly.

A checkpoint holds what the next step depends on: the online and target weights, Adam's slots,
the replay memory (with its sampling RNG), the step counter (the ε schedule is a function of it),
the game in progress (emulator with its RNG, the wrappers' state), the global Python and NumPy
RNGs (ε-greedy draws from NumPy's) and the trainer's own progress (history rows so far).

File format: an uncompressed `.npz` followed by a 48-byte trailer, the SHA-256 of the `.npz` and
a magic line. It is written atomically (temporary file, fsync, rename). A file whose trailer or
checksum does not match is skipped with a warning, and the one before it is used.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import sys
from pathlib import Path

import numpy as np

from invaders import files
from invaders.config import Params

MAGIC = b"invaders-ckpt-1\n"  # 16 bytes
KEEP = 2  # the newest two, so a checkpoint that turns out corrupt has a predecessor


class CorruptCheckpoint(Exception):
    pass


def fingerprint(params: Params, model_path: Path) -> str:
    """What a checkpoint may only be resumed with: the training params, start network and code."""
    digest = hashlib.sha256()
    trained = {k: v for k, v in params.flat().items() if k == "seed" or k.split(".")[0] in
               {"env", "model", "agent", "train"}}
    digest.update(json.dumps(trained, sort_keys=True, default=str).encode())
    digest.update(files.sha256(model_path).encode())
    for source in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(source.name.encode() + source.read_bytes())
    return digest.hexdigest()


def save(directory: Path, step: int, arrays: dict[str, np.ndarray], meta: dict) -> Path:
    """Write `step-<step>.ckpt` in `directory` and delete all but the newest `KEEP`."""
    path = directory / f"step-{step:09d}.ckpt"
    meta = {**meta, "step": step, "rng": {"python": random.getstate(), "numpy": _numpy_rng_state()}}
    with files.atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, __meta__=np.array(json.dumps(meta)), **arrays)
        digest = bytes.fromhex(files.sha256(tmp))
        with open(tmp, "ab") as f:
            f.write(digest + MAGIC)
    for old in sorted(directory.glob("step-*.ckpt"))[:-KEEP]:
        old.unlink()
    return path


def load(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    """The arrays and metadata of a checkpoint; CorruptCheckpoint if it fails its checksum."""
    data = path.read_bytes()
    if len(data) < 48 or data[-16:] != MAGIC:
        raise CorruptCheckpoint("truncated: no trailer")
    payload, digest = data[:-48], data[-48:-16]
    if hashlib.sha256(payload).digest() != digest:
        raise CorruptCheckpoint("checksum mismatch")
    with np.load(io.BytesIO(payload), allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    return arrays, json.loads(str(arrays.pop("__meta__")))


def latest(directory: Path, expected_fingerprint: str) -> tuple[dict[str, np.ndarray], dict] | None:
    """The newest good checkpoint made with these params, start network and code, if any."""
    for path in sorted(directory.glob("step-*.ckpt"), reverse=True):
        try:
            arrays, meta = load(path)
        except (CorruptCheckpoint, OSError, ValueError) as exc:
            print(f"warning: {path}: unusable checkpoint ({exc}); trying an earlier one", file=sys.stderr)
            continue
        if meta.get("fingerprint") != expected_fingerprint:
            print(f"note: {path} was made with other params, start network or code; not resuming from it",
                  file=sys.stderr)
            continue
        return arrays, meta
    return None


def nest(prefix: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`arrays` under `prefix/`, so several parts' arrays share one checkpoint file."""
    return {f"{prefix}/{name}": value for name, value in arrays.items()}


def part(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The arrays `nest(prefix, ...)` stored, under their own names again."""
    return {name[len(prefix) + 1:]: value for name, value in arrays.items() if name.startswith(f"{prefix}/")}


def restore_rngs(meta: dict) -> None:
    version, state, gauss = meta["rng"]["python"]
    random.setstate((version, tuple(state), gauss))
    name, keys, pos, has_gauss, cached = meta["rng"]["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


def clear(directory: Path) -> None:
    for path in directory.glob("step-*.ckpt"):
        path.unlink()


def _numpy_rng_state() -> list:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]
