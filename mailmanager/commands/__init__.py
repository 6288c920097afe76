"""CLI command groups that live outside `cli.py`, one module per feature area.

Each module defines `register(main: click.Group) -> None`, which adds its commands to the
`mailmanager` group. Modules import `mailmanager.cli` for the shared helpers (`State`,
`database`, `fail`, `emit_json`, exit codes); `cli.py` registers them after it is defined.
"""

from __future__ import annotations

import importlib

import click

MODULES = ("crm", "matching", "reminders", "notify", "auth")


def register_all(main: click.Group) -> None:
    for name in MODULES:
        qualified = f"{__name__}.{name}"
        try:
            module = importlib.import_module(qualified)
        except ModuleNotFoundError as exc:
            if exc.name == qualified:  # that feature area is not written yet
                continue
            raise
        module.register(main)
