"""Training checkpoints: the whole state of a run, in one checksummed file, to continue it exactly.

A checkpoint holds what the next step depends on: the online and target weights, Adam's slots,
the replay memory (with its sampling RNG), the step counter (the ε schedule is a function of it),
the game in progress (emulator with its RNG, the wrappers' state), the global Python and NumPy
RNGs (ε-greedy draws from NumPy's) and the trainer's own progress (history rows so far).

File format: an uncompressed `.npz` followed by a 48-byte trailer, the SHA-256 of the `.npz` and
a magic line. It is written atomically (temporary file, fsync, rename). A file whose trailer or
checksum does not match is skipped with a warning, and the one before it is used. Checking a
file streams it through SHA-256, and its arrays are read one at a time when restored, so resuming
needs little memory beyond the replay memory being restored into (7 GB at 1 000 000 transitions).
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from invaders import files
from invaders.config import Params
from invaders.errors import first_line

MAGIC = b"invaders-ckpt-1\n"  # 16 bytes
KEEP = 2  # the newest two, so a checkpoint that turns out corrupt has a predecessor


class CorruptCheckpoint(Exception):
    pass


def fingerprint(params: Params, model_path: Path, code: str) -> str:
    """What a checkpoint may only be resumed with: the training params, start network and `code` (the
    digest of the source files training runs: `sources.digest` of the train stage's import closure)."""
    digest = hashlib.sha256()
    # Validation plays `evaluate.parallel_episodes` at a time: its scores, so the kept network, depend on it.
    trained = {k: v for k, v in params.flat().items() if k in ("seed", "evaluate.parallel_episodes")
               or k.split(".")[0] in {"env", "model", "agent", "train"}}
    digest.update(json.dumps(trained, sort_keys=True, default=str).encode())
    digest.update(files.sha256(model_path).encode())
    digest.update(code.encode())
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


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    meta: dict  # step, fingerprint, run id, RNG states, the trainer's progress, the game's small state

    @contextmanager
    def arrays(self) -> Iterator[Mapping[str, np.ndarray]]:
        """The checkpoint's arrays, each read from the file when it is looked up."""
        with np.load(self.path, allow_pickle=False) as npz:  # zip readers ignore the trailer after it
            yield npz


def load(path: Path) -> Checkpoint:
    """The checkpoint at `path`; CorruptCheckpoint if it fails its checksum."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        f.seek(max(size - 48, 0))
        trailer = f.read()
        if size < 48 or trailer[-16:] != MAGIC:
            raise CorruptCheckpoint("truncated: no trailer")
        digest = trailer[:32]
    if files.sha256(path, length=size - 48) != digest.hex():
        raise CorruptCheckpoint("checksum mismatch")
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(str(npz["__meta__"]))
    # Bytes as written but not a checkpoint's (another writer's, or a bug's): whatever numpy or json raise on
    # them (a .npy, a header numpy cannot parse, no metadata) makes the file unusable, not the run.
    except Exception as exc:  # noqa: BLE001
        raise CorruptCheckpoint(f"not a checkpoint's arrays ({first_line(exc, 100)})") from None
    if not isinstance(meta, dict):
        raise CorruptCheckpoint(f"its metadata is a {type(meta).__name__}, not a mapping")
    return Checkpoint(path, meta)


def latest(directory: Path, expected_fingerprint: str) -> Checkpoint | None:
    """The newest good checkpoint made with these params, start network and code, if any."""
    for path in sorted(directory.glob("step-*.ckpt"), reverse=True):
        try:
            found = load(path)
        except (CorruptCheckpoint, OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            print(f"warning: {path}: unusable checkpoint ({exc}); trying an earlier one", file=sys.stderr)
            continue
        if found.meta.get("fingerprint") != expected_fingerprint:
            print(f"note: {path} was made with other params, start network or code; not resuming from it",
                  file=sys.stderr)
            continue
        return found
    return None


def nest(prefix: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`arrays` under `prefix/`, so several parts' arrays share one checkpoint file."""
    return {f"{prefix}/{name}": value for name, value in arrays.items()}


def part(arrays: Mapping[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The arrays `nest(prefix, ...)` stored, under their own names again."""
    return {name[len(prefix) + 1:]: arrays[name] for name in arrays if name.startswith(f"{prefix}/")}


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
