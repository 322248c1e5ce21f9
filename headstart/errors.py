"""The one error a user sees: what is wrong, with which input, and how to fix it.

The CLI prints a HeadstartError on one line and exits with status 2; anything else
that escapes is a bug in headstart and keeps its traceback.
"""

from __future__ import annotations


class HeadstartError(Exception):
    """A mistake in the user's input or environment, with the fix in the message."""

    exit_code = 2


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else (many or word + 's')}"
