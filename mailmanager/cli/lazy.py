"""A click group whose commands are imported on first use.

Each command module imports the areas it drives (SQLAlchemy models, the sync engine, the
notifier...), about half a second in all. A `LazyGroup` names its commands by
"package.module:attribute" and imports a module only when one of its commands runs, so
`mailmanager status` loads what `status` needs and `mailmanager --help` loads none of them:
the listing shows each command's `summary`, the first sentence of its help, kept here
(`tests/cli/test_lazy_commands.py` holds every summary equal to its command's help).

This is the pattern of click's documentation, "Lazily Loading Subcommands"
(https://click.palletsprojects.com/en/stable/complex/#lazily-loading-subcommands).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import click


@dataclass(frozen=True)
class Lazy:
    """Where a command is defined, and what `--help` says of it before it is imported."""

    target: str  # "package.module:attribute"
    summary: str  # the first sentence of the command's help

    def load(self) -> click.Command:
        """Import the command's module and return the command."""
        module_name, _, attribute = self.target.partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.target} is not a click command")
        return command


class LazyGroup(click.Group):
    """A group with `lazy_commands` (name -> `Lazy`) besides the commands it is given."""

    def __init__(
        self, *args: Any, lazy_commands: Mapping[str, Lazy] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy_commands:
            self.add_command(self.lazy_commands[cmd_name].load(), cmd_name)
        return super().get_command(ctx, cmd_name)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        # An unknown name: click suggests the close ones among the commands loaded so far
        # ("Did you mean 'status'?"), so load them all first. Only a typo pays for it.
        if args and args[0] not in self.commands and args[0] not in self.lazy_commands:
            for name in self.lazy_commands:
                self.get_command(ctx, name)
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List the commands as click does, with a stand-in for each one not imported yet."""
        listing: dict[str, click.Command] = {}
        for name in self.list_commands(ctx):
            command = self.commands.get(name)
            if command is None:
                command = click.Command(name, help=self.lazy_commands[name].summary)
            listing[name] = command
        click.Group(commands=listing).format_commands(ctx, formatter)
