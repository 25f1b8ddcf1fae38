"""Atomic output files: write to a temporary sibling, fsync, rename.

A stage that dies part-way leaves each output either as it was or complete.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from invaders.errors import UserError, first_line


class OutputError(UserError):
    """An output that could not be written (a full disk, a file-size limit, no permission)."""


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary sibling of `path` to write; once the block succeeds it is synced and renamed.

    If writing fails, the temporary file is removed and `path` keeps its previous content.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")  # writers pick formats by suffix
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:  # Python ignores SIGXFSZ, so a size limit arrives here as EFBIG
        reason = exc.strerror or first_line(exc, None)
        raise OutputError(f"{path}: could not be written ({reason}); its previous version is unchanged") from None
    finally:
        tmp.unlink(missing_ok=True)


BLOCK = 1 << 20  # bytes read at a time when hashing


def sha256(path: str | Path, length: int | None = None) -> str:
    """SHA-256 of the file, or of its first `length` bytes, read a block at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        remaining = math.inf if length is None else length
        while remaining > 0 and (block := f.read(min(BLOCK, remaining))):
            digest.update(block)
            remaining -= len(block)
    return digest.hexdigest()


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path: str | Path, obj: object) -> None:
    write_text(path, json.dumps(obj, indent=2) + "\n")


def write_csv(path: str | Path, rows: Iterable[Mapping[str, object]], fieldnames: list[str]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fieldnames, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buf.getvalue())


def require(path: str | Path) -> Path:
    """An upstream stage's output, which must exist before this stage starts any work."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: missing; run the stages before this one (dvc repro)")
    return path


def read_json(path: str | Path) -> dict:
    """An upstream stage's JSON output; a missing or unreadable one is the user's to fix."""
    try:
        return json.loads(require(path).read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not readable JSON ({exc})") from None
