"""Click's usage errors in one line, like labelbot's own (issue 12).

A missing argument, an unknown option or command, or a value of the wrong type would otherwise print
click's usage text and a boxed error (six lines); the line names the problem and where the help is.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

try:  # typer vendors click as typer._click (0.2x): its usage errors are not click's own classes
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - a typer on the installed click
    from click import exceptions as click_exceptions  # type: ignore[no-redef]

_err_console = Console(stderr=True)


@contextlib.contextmanager
def usage_errors_in_one_line() -> Iterator[None]:
    """A usage error becomes one ``error:`` line and click's exit status (2); a bare command group
    still shows its help."""
    try:
        yield
    except click_exceptions.UsageError as exc:
        if isinstance(exc, click_exceptions.NoArgsIsHelpError):
            raise
        where = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        _err_console.print(f"[red]error:[/red] {escape(exc.format_message() + where)}", highlight=False,
                           markup=True, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None


class OneLineUsageErrors(TyperGroup):
    """The top command group (``typer.Typer(cls=...)``): parsing its own arguments and running a
    subcommand, which parses its own, both happen inside it."""

    def make_context(self, *args: Any, **kwargs: Any) -> typer.Context:
        with usage_errors_in_one_line():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: typer.Context) -> Any:
        with usage_errors_in_one_line():
            return super().invoke(ctx)
