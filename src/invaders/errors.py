"""Errors a user can fix, and the one-line, exit-code-2 way every entry point reports them."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps


class UserError(Exception):
    """Bad input: the message is one line naming what is wrong and what is allowed."""

    exit_code = 2


def exit_on_user_error(main: Callable[..., None]) -> Callable[..., None]:
    """Run `main`; a UserError becomes one line on stderr and its exit code (2), no traceback."""

    @wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(exc.exit_code)

    return wrapper
