"""The command list of `mailmanager` (`cli.app.COMMANDS`): every entry names a real command,
its summary is what that command's help says, and a command imports only what it needs."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from mailmanager.cli import app
from mailmanager.cli.lazy import Lazy, LazyGroup


def _lazy_entries() -> list[object]:
    reminders = app.COMMANDS["reminders"].load()
    assert isinstance(reminders, LazyGroup)
    return [
        pytest.param(group, name, lazy, id=f"{group.name} {name}")
        for group in (app.main, reminders)
        for name, lazy in group.lazy_commands.items()
    ]


@pytest.mark.parametrize(("group", "name", "lazy"), _lazy_entries())
def test_each_entry_names_its_command_and_its_help(group: LazyGroup, name: str, lazy: Lazy) -> None:
    command = lazy.load()
    assert command.name == name
    stand_in = click.Command(name, help=lazy.summary)
    for limit in range(10, 200):
        assert stand_in.get_short_help_str(limit) == command.get_short_help_str(limit), (
            f"{group.name} {name}: the summary in COMMANDS differs from the command's help"
        )


def _imported_after(*code: str) -> set[str]:
    """The mailmanager and sqlalchemy modules a fresh interpreter has after running `code`."""
    script = "\n".join(
        [
            "import sys",
            *code,
            "print(' '.join(m for m in sys.modules"
            " if m.startswith(('mailmanager', 'sqlalchemy'))))",
        ]
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    return set(out.split())


def test_help_imports_no_command_and_no_database() -> None:
    modules = _imported_after(
        "from mailmanager.cli import app",
        "try:",
        "    app.main(['--help'])",
        "except SystemExit:",
        "    pass",
    )
    assert "mailmanager.cli.app" in modules
    assert not {m for m in modules if m.startswith("sqlalchemy")}
    assert not {m for m in modules if m.startswith("mailmanager.cli.")} - {
        "mailmanager.cli.app",
        "mailmanager.cli.lazy",
    }


def test_a_command_imports_its_own_module_only() -> None:
    modules = _imported_after(
        "import click",
        "from mailmanager.cli import app",
        "app.main.get_command(click.Context(app.main), 'status')",
    )
    assert "mailmanager.cli.browse" in modules
    assert "mailmanager.cli.syncing" not in modules
    assert "mailmanager.daemon" not in modules
    assert "mailmanager.sync.engine" not in modules


def test_an_unknown_command_still_gets_suggestions() -> None:
    result = CliRunner().invoke(app.main, ["stat"])
    assert result.exit_code == 2
    assert "Did you mean 'status'?" in result.output
