"""Finds connector classes by name through the `mailmanager.connectors` entry-point group.

The core never imports `connectors/`: a third-party package adds a connector by declaring
an entry point in that group, whose name equals the class's `name` attribute. Tests and
embedding applications may also `register` a class directly; a registered class shadows an
installed entry point of the same name until `unregister`.
"""

from __future__ import annotations

import difflib
from functools import cache
from importlib import metadata

from mailmanager import spi

GROUP = "mailmanager.connectors"

_registered: dict[str, type[spi.Connector]] = {}


class UnknownConnectorError(spi.ConfigError):
    """Raised when no installed connector has the requested name."""


@cache
def available() -> dict[str, metadata.EntryPoint]:
    """Every installed connector entry point, by name."""
    return {ep.name: ep for ep in metadata.entry_points(group=GROUP)}


def names() -> list[str]:
    return sorted(set(available()) | set(_registered))


def register(name: str, cls: type[spi.Connector]) -> None:
    """Make `cls` loadable as `name` without an entry point (tests, plugins, embedding).

    Raises `spi.ConfigError` when `cls.name` differs from `name`.
    """
    if getattr(cls, "name", None) != name:
        raise spi.ConfigError(
            "connector",
            f"cannot register {cls!r} as {name!r}: its name is {getattr(cls, 'name', None)!r}",
        )
    _registered[name] = cls


def unregister(name: str) -> None:
    """Forget a class given to `register`; installed entry points are untouched."""
    _registered.pop(name, None)


def load(name: str, key: str = "connector") -> type[spi.Connector]:
    """Return the connector class registered as `name`.

    Raises `UnknownConnectorError` (naming `key` and the installed names) when there is none,
    and `spi.ConfigError` when the entry point cannot be imported.
    """
    if name in _registered:
        return _registered[name]
    eps = available()
    ep = eps.get(name)
    if ep is None:
        known = names()
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UnknownConnectorError(
            key,
            f"unknown connector {name!r}",
            f"{hint}installed connectors: {', '.join(known) or 'none'}; "
            "a connector package must declare an entry point in the "
            f"{GROUP!r} group",
        )
    try:
        cls = ep.load()
    except ImportError as exc:
        raise spi.ConfigError(
            key, f"connector {name!r} cannot be loaded: {exc}", "install its dependencies"
        ) from exc
    if getattr(cls, "name", None) != name:
        raise spi.ConfigError(
            key, f"entry point {name!r} loads a class whose name is {getattr(cls, 'name', None)!r}"
        )
    return cls  # type: ignore[no-any-return]
