"""The one error a user sees: what is wrong, with which input, and how to fix it.

The CLI prints a HeadstartError on one line and exits with status 2; anything else
that escapes is a bug in headstart and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Sequence


class HeadstartError(Exception):
    """A mistake in the user's input or environment, with the fix in the message: always one line, so a
    name it quotes (a file called "a\nb.png") shows its control characters escaped."""

    exit_code = 2

    def __init__(self, message: object = "", *args: object) -> None:
        text = str(message)
        if not text.isprintable():
            text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
        super().__init__(text, *args)


class CannotWrite(HeadstartError):
    """A write that failed for want of space or permission (headstart.fileio.disk_room): one line for a
    user's output; a cache that meets it goes on without caching (its `errno` says why)."""

    def __init__(self, message: str, errno: int | None) -> None:
        super().__init__(message)
        self.errno = errno


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else (many or word + 's')}"


SHOWN = 5  # items named in a message before '... and N more'


def shortlist(items: Sequence[object], n: int = SHOWN, sep: str = ", ") -> str:
    """The first n items, then how many more: 'a, b, c, ... and 4 more'."""
    shown = sep.join(str(x) for x in items[:n])
    return shown + (f"{sep}... and {len(items) - n} more" if len(items) > n else "")
