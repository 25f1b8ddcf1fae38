"""Private or patched upstream APIs, one module per upstream, each checking at import that the installed
version is one it was written for (`require`): a new release fails loudly here, not subtly elsewhere."""

from __future__ import annotations

import importlib.metadata
import re


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", re.match(r"[\d.]*", version).group())[:3])


def require(package: str, lowest: str, below: str) -> str:
    """The installed version of `package`; ImportError unless `lowest` <= it < `below`."""
    wanted = f">={lowest},<{below}"
    try:
        found = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        raise ImportError(f"{package} is not installed; invaders.compat needs {package}{wanted}") from None
    if not _release(lowest) <= _release(found) < _release(below):
        raise ImportError(f"{package} {found} is installed; invaders.compat was written for {package}{wanted}"
                          f" (its private APIs may have changed: check invaders/compat before widening the range)")
    return found
