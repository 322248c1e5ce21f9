"""The entry point of the `headstart` command: its subcommands registered, a user's mistake (HeadstartError,
or a usage error) one line on stderr and exit 2."""

from __future__ import annotations


import click

from ..errors import HeadstartError
from . import train, use  # noqa: F401  (registers the subcommands)
from .common import cli


_NO_ARGS = getattr(click.exceptions, "NoArgsIsHelpError", ())


def main(argv: list[str] | None = None) -> int:
    """Entry point: exit 0 on success, 2 on a user's mistake (one line on stderr)."""
    try:
        code = cli.main(args=argv, prog_name="headstart", standalone_mode=False)
        if isinstance(code, int):  # ctx.exit(n), e.g. from a relaunch under --processes
            return code
    except HeadstartError as e:
        from ..runtime import is_main_rank

        if is_main_rank():  # in a distributed run every process meets the same error: say it once
            click.echo(f"error: {e}", err=True)
        return 2
    except click.UsageError as e:
        if _NO_ARGS and isinstance(e, _NO_ARGS):  # `headstart` alone: show the help, not an error
            click.echo(e.ctx.get_help() if e.ctx else str(e))
            return 0
        cmd = e.ctx.command_path if e.ctx else "headstart"
        click.echo(f"error: {e.format_message()} (see `{cmd} --help`)", err=True)
        return 2
    except OSError as e:  # a disk that filled up, or a file refused, where no write said which
        from ..fileio import NO_ENTRY, NO_ROOM

        if e.errno in NO_ENTRY:
            click.echo(f"error: {e.strerror}: {e.filename or 'a file'}; check its permissions, or use another "
                       "path", err=True)
            return 2
        if e.errno not in NO_ROOM:
            raise
        where = f" writing {e.filename}" if e.filename else ""
        click.echo(f"error: no space left on the device{where}; free some space, or write elsewhere", err=True)
        return 2
    except click.Abort:
        click.echo("interrupted", err=True)
        return 130
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    return 0
