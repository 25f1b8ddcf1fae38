"""Errors a user can fix, and the one-line, exit-code-2 way every entry point reports them."""

from __future__ import annotations

import gc
import os
import reprlib
import sys
import traceback
from collections.abc import Callable
from functools import wraps

# Set to see the traceback of an unexpected error instead of its one line.
TRACEBACK_VAR = "INVADERS_TRACEBACK"


class UserError(Exception):
    """Bad input: the message is one line naming what is wrong and what is allowed."""

    exit_code = 2


class ModelFileError(UserError):
    """A model file (or registry URI) that cannot be used; the message is one line for the user."""


def first_line(what: BaseException | str, limit: int | None = 200) -> str:
    """The first line of an error's message (or of a text), cut at `limit` characters: what a one-line
    report quotes. An exception whose message is empty gives its class name."""
    text = str(what).strip()
    line = text.splitlines()[0] if text else type(what).__name__ if isinstance(what, BaseException) else ""
    return line[:limit]


# Bounded: a YAML alias bomb (a list of lists, 9 ** 9 items by reference) or a list nested a
# thousand deep is a value too, and a message must show it in one short line without a hang.
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring, _REPR.maxother, _REPR.maxlong = 2, 5, 4, 60, 60, 40


def shown(value: object) -> str:
    """`repr(value)` as a one-line message quotes it: a few dozen characters, made in bounded time."""
    try:
        return _REPR.repr(value)
    except ValueError:  # an integer too long to convert to text
        return f"<{type(value).__name__} of {value.bit_length()} bits>" if isinstance(value, int) else \
            f"<{type(value).__name__}>"


def named(text: object, limit: int = 120) -> str:
    """A name or path the user gave, for a one-line message: as it is if printable and short, else `shown`."""
    text = str(text)
    return text if text.isprintable() and len(text) <= limit else shown(text)


def unexpected(exc: BaseException) -> str:
    """One line for an error nobody foresaw: what it is and where it came from, not what it might mean."""
    message = first_line(str(exc), 300)
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" (at {_short_path(frame.filename)}:{frame.lineno})" if frame else ""
    kind = type(exc).__qualname__ if type(exc).__module__ == "builtins" else \
        f"{type(exc).__module__}.{type(exc).__qualname__}"
    return (f"unexpected {kind}: {message}{where};"
            f" {TRACEBACK_VAR}=1 shows the traceback")


def _short_path(filename: str) -> str:
    return os.path.join(os.path.basename(os.path.dirname(filename)), os.path.basename(filename))


def exit_on_user_error(main: Callable[..., None]) -> Callable[..., None]:
    """Run `main`; a UserError becomes one line on stderr and its exit code (2), no traceback.
    Any other error also becomes one line, saying what it is, with exit code 2."""

    @wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as exc:
            message, code = str(exc), exc.exit_code
        except Exception as exc:
            if os.environ.get(TRACEBACK_VAR):
                raise
            message, code = unexpected(exc), 2
        # Out here the error's traceback is gone; collecting what its frames held (an emulator)
        # before exit keeps native libraries' leak reports from following the one line.
        gc.collect()
        print(f"error: {message}", file=sys.stderr)
        sys.exit(code)

    return wrapper
