"""Declarative validation of TOML tables against frozen dataclasses.

`mailmanager.config` describes each section of the configuration file as a frozen dataclass.
`read_table` checks one TOML table against such a class: every key must be a field (unknown
keys get a difflib "did you mean" and the list of valid keys), every value must have the
field's type (named in TOML words), required fields must be present, and a field may carry an
extra validator in its metadata (see `spec`) that refines or normalises the value. Problems
are collected in a `Problems` list rather than raised one by one, so the admin sees them all.

Secret references (`NAME_env` / `NAME_file`) are resolved here too, by `resolve_secret`.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import stat
import types
import typing
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from mailmanager import spi
from mailmanager.errors import MailmanagerError

Check = Callable[[Any, "Context"], Any]

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class ConfigFileError(MailmanagerError):
    """Raised when the configuration file, or a secret or connector it names, is invalid;
    `errors` holds every problem found, each a `spi.ConfigError` (one key, its problem,
    its fix).

    Loading collects the problems of the whole file and raises them together, so one run
    shows them all. `str()` lists them one per line. It is not an `spi.ConfigError`:
    `except spi.ConfigError` still sees only a single problem raised on its own (by a
    connector, the registry or `Config.mailbox`).
    """

    def __init__(self, errors: Collection[spi.ConfigError]) -> None:
        self.errors: tuple[spi.ConfigError, ...] = tuple(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


class Invalid(MailmanagerError):
    """Raised by a field validator when a value is wrong; `read_table` adds the key."""

    def __init__(self, problem: str, fix: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix


@dataclass(frozen=True)
class Context:
    """What validators may need: the directory relative paths resolve against."""

    base_dir: str


class Problems(list[spi.ConfigError]):
    """The problems found so far."""

    def add(self, key: str, problem: str, fix: str = "") -> None:
        self.append(spi.ConfigError(key, problem, fix))

    def raise_if_any(self) -> None:
        """Raise `ConfigFileError` when at least one problem was recorded."""
        if self:
            raise ConfigFileError(self)


def spec(check: Check | None = None, example: str = "", internal: bool = False) -> dict[str, Any]:
    """Metadata for a dataclass field read from TOML.

    `check(value, ctx)` returns the (possibly normalised) value or raises `Invalid`;
    `example` is shown in the fix when a required key is missing; `internal` fields are
    filled by code and never read from the file.
    """
    return {"check": check, "example": example, "internal": internal}


def toml_fields(cls: type) -> list[dataclasses.Field[Any]]:
    """The fields of dataclass `cls` that the file may set."""
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("internal", False)]


def did_you_mean(word: str, valid: Collection[str], what: str = "valid keys") -> str:
    """A fix naming the closest valid word, if any, and every valid one."""
    close = difflib.get_close_matches(word, list(valid), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{hint}{what}: {', '.join(sorted(valid)) or 'none'}"


def check_keys(table: Mapping[str, object], valid: Collection[str], key: str, p: Problems) -> None:
    """Report every key of `table` that is not in `valid`."""
    for name in table:
        if name not in valid:
            p.add(join(key, name), "unknown key", did_you_mean(name, valid))


def join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def toml_type(value: object) -> str:
    """The TOML name of a parsed value's type."""
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string"}
    for py, name in names.items():
        if isinstance(value, py):
            return name
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return "a date/time"


_WORDS: dict[Any, tuple[str, str, str]] = {
    bool: ("a boolean", "booleans", "write true or false, without quotes"),
    int: ("an integer", "integers", "write a whole number, without quotes"),
    float: ("a number", "numbers", "write a number, without quotes"),
    str: ("a string", "strings", 'put the value in double quotes: "..."'),
}


def describe(hint: Any) -> tuple[str, str]:
    """The TOML words for a field's Python type, and how to write such a value."""
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        return describe(next(a for a in typing.get_args(hint) if a is not type(None)))
    if typing.get_origin(hint) is tuple:
        plural = _WORDS.get(typing.get_args(hint)[0], _WORDS[str])[1]
        return f"an array of {plural}", 'write a list in brackets: ["a", "b"]'
    words = _WORDS.get(hint, _WORDS[str])
    return words[0], words[2]


def coerce(value: object, hint: Any) -> object:
    """Return `value` as the field type `hint` wants (arrays become tuples).

    Raises `Invalid` naming the expected type when the value does not fit.
    """
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        # TOML has no null, so `X | None` only means "may be absent".
        return coerce(value, next(a for a in typing.get_args(hint) if a is not type(None)))
    if origin is Mapping:  # an inline table of strings, e.g. storage_folders
        if isinstance(value, dict):
            arg = typing.get_args(hint)[1]
            out = {}
            for name, item in value.items():
                try:
                    out[name] = coerce(item, arg)
                except Invalid as exc:
                    raise Invalid(f"{name}: {exc.problem}", exc.fix) from None
            return out
        raise Invalid(f"expected a table, got {toml_type(value)}", 'write { "Name" = "value" }')
    if origin is tuple:
        if isinstance(value, list):
            items = []
            for i, item in enumerate(value):
                try:
                    items.append(coerce(item, typing.get_args(hint)[0]))
                except Invalid as exc:
                    raise Invalid(f"item {i}: {exc.problem}", exc.fix) from None
            return tuple(items)
    elif hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    elif hint is int and isinstance(value, bool):
        pass  # a TOML boolean is not an integer, although Python says so
    elif isinstance(hint, type) and isinstance(value, hint):
        return value
    expected, fix = describe(hint)
    raise Invalid(f"expected {expected}, got {toml_type(value)}", fix)


def read_table(
    table: Mapping[str, object], cls: type, key: str, ctx: Context, p: Problems
) -> dict[str, object]:
    """Validate the fields of `cls` in `table`; return field name -> checked value.

    An absent field takes its default, passed through its validator too (so a relative
    default path is resolved like a written one). Invalid fields are left out and reported
    to `p`. Keys that are not fields are ignored here: see `check_keys`.
    """
    hints = typing.get_type_hints(cls)
    out: dict[str, object] = {}
    for f in toml_fields(cls):
        fkey = join(key, f.name)
        check: Check | None = f.metadata.get("check")
        if f.name not in table:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                example = f.metadata.get("example") or "..."
                p.add(fkey, "missing required key", f"add {f.name} = {example}")
            elif check and f.default is not None and f.default is not dataclasses.MISSING:
                out[f.name] = check(f.default, ctx)
            continue
        try:
            value = coerce(table[f.name], hints[f.name])
            out[f.name] = check(value, ctx) if check else value
        except Invalid as exc:
            p.add(fkey, exc.problem, exc.fix)
    return out


def build(
    table: object, cls: type, key: str, ctx: Context, p: Problems, extra: Mapping[str, object]
) -> Any:
    """Check `table` fully against `cls` and return an instance, or None if it is invalid.

    `extra` gives the internal fields' values.
    """
    if not isinstance(table, dict):
        p.add(key, f"expected a table, got {toml_type(table)}", f"write [{key}] then its keys")
        return None
    before = len(p)
    check_keys(table, [f.name for f in toml_fields(cls)], key, p)
    values = read_table(table, cls, key, ctx, p)
    return cls(**values, **extra) if len(p) == before else None


def each(check: Check) -> Check:
    """A validator applying `check` to every item of an array."""
    return lambda values, ctx: tuple(check(v, ctx) for v in values)


def one_of(*choices: str, fold: Callable[[str], str] = str) -> Check:
    """A validator accepting only `choices` (after applying `fold`)."""

    def check(value: str, ctx: Context) -> str:
        if fold(value) not in choices:
            raise Invalid(f"{value!r} is not allowed", f"use one of: {', '.join(choices)}")
        return fold(value)

    return check


def at_least(low: int) -> Check:
    """A validator for integers no smaller than `low`."""

    def check(value: int, ctx: Context) -> int:
        if value < low:
            raise Invalid(f"{value} is too small", f"use an integer >= {low}")
        return value

    return check


def env_name(value: str, ctx: Context) -> str:
    """Validate the name of an environment variable."""
    if not _ENV_NAME.match(value):
        raise Invalid(
            f"{value!r} is not an environment variable name",
            "give the variable's name (letters, digits, _), not its value",
        )
    return value


def resolve_path(path: str, base_dir: str) -> str:
    """`path` with ~ expanded, made absolute against `base_dir` when relative."""
    return os.path.normpath(os.path.join(base_dir, os.path.expanduser(path)))


def resolve_secret(
    key: str, env: str | None, file: str | None, base_dir: str, p: Problems
) -> str | None:
    """Read a secret from the environment variable `env` or from the file `file`.

    `key` is the option's dotted path without the `_env`/`_file` suffix. Problems (variable
    unset or empty, file missing, unreadable, or readable by group/others) go to `p`; the
    result is then None, as it is when neither reference is given.
    """
    if env is not None:
        value = os.environ.get(env)
        if not value:
            p.add(
                f"{key}_env",
                f"environment variable {env} is not set or empty",
                f"export {env}=... in the service's environment",
            )
        return value or None
    if file is None:
        return None
    path = resolve_path(file, base_dir)
    try:
        mode = os.stat(path).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            p.add(
                f"{key}_file",
                f"secret file {path} is readable by group or others",
                f"chmod 600 {path}",
            )
            return None
        with open(path, encoding="utf-8") as fh:
            value = fh.read().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        p.add(
            f"{key}_file",
            f"file {path} not readable: {exc.__class__.__name__}",
            "create it (mode 600) holding only the secret, or fix the path",
        )
        return None
    if not value:
        p.add(f"{key}_file", f"secret file {path} is empty", "write the secret into it")
    return value or None


def fail(key: str, problem: str, fix: str = "") -> ConfigFileError:
    """A `ConfigFileError` holding one problem, for the caller to raise."""
    return ConfigFileError([spi.ConfigError(key, problem, fix)])


Reader = Callable[[object, type, str, Context, Problems], Any]


def plain(table: object, cls: type, key: str, ctx: Context, p: Problems) -> Any:
    """The default `Section.reader`: `build`, giving a `key` internal field its dotted key."""
    names = {f.name for f in dataclasses.fields(cls)}
    return build(table, cls, key, ctx, p, {"key": key} if "key" in names else {})


@dataclass(frozen=True)
class Section:
    """How one top-level key is read: a table, or an array of tables (`[[name]]`)."""

    cls: type
    array: bool = False
    required: bool = False
    reader: Reader = plain


def read_section(name: str, section: Section, raw: object, ctx: Context, p: Problems) -> Any:
    """The section's instance (None if invalid), or for an array the tuple of valid items."""
    if not section.array:
        return section.reader({} if raw is None else raw, section.cls, name, ctx, p)
    if raw is None:
        if section.required:
            fix = f"add a [[{name}]] table (see config.example.toml)"
            p.add(name, f"at least one [[{name}]] table is required", fix)
        return ()
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        got = toml_type(raw)
        p.add(name, f"expected an array of tables, got {got}", f"write [[{name}]] for each one")
        return ()
    items = (section.reader(t, section.cls, f"{name}[{i}]", ctx, p) for i, t in enumerate(raw))
    return tuple(item for item in items if item is not None)


def duplicates(keys: list[tuple[str, str]], what: str, p: Problems) -> None:
    """Report every (key, value) whose value an earlier pair already had."""
    seen: dict[str, str] = {}
    for key, value in keys:
        if value in seen:
            p.add(
                key, f"{what} {value!r} is already used at {seen[value]}", f"give each {what} once"
            )
        seen.setdefault(value, key)


_KINDS: dict[str, Any] = {"str": str, "int": int, "bool": bool, "list": tuple[str, ...]}


def option_keys(declared: Collection[spi.Option]) -> list[str]:
    """The keys a mailbox table may use for these connector options."""
    return [f"{o.name}_{s}" for o in declared if o.secret for s in ("env", "file")] + [
        o.name for o in declared if not o.secret
    ]


def read_options(
    table: Mapping[str, object],
    declared: Collection[spi.Option],
    key: str,
    ctx: Context,
    p: Problems,
) -> dict[str, object]:
    """Check a mailbox's connector options; return them as written, with defaults filled.

    A secret option NAME appears as `NAME_env` or `NAME_file`, never as NAME itself.
    """
    out: dict[str, object] = {}
    for opt in declared:
        okey = join(key, opt.name)
        if opt.secret:
            refs = [f"{opt.name}_{s}" for s in ("env", "file") if f"{opt.name}_{s}" in table]
            how = f'{opt.name}_env = "VAR" (then export VAR=...) or {opt.name}_file = "/path"'
            if opt.name in table:
                p.add(okey, "a secret is never written in the file", f"write {how} instead")
            elif len(refs) > 1:
                p.add(okey, f"both {refs[0]} and {refs[1]} are given", "keep only one")
            elif not refs and opt.required:
                p.add(f"{okey}_env", "missing required secret", f"add {how}")
            for ref in refs:
                try:
                    ref_value = str(coerce(table[ref], str))
                    out[ref] = env_name(ref_value, ctx) if ref.endswith("_env") else ref_value
                except Invalid as exc:
                    p.add(join(key, ref), exc.problem, exc.fix)
        elif opt.name not in table:
            if opt.required:
                p.add(okey, "missing required key", f"add {opt.name} = ... {opt.help}".strip())
            else:
                out[opt.name] = opt.default
        else:
            try:
                value = coerce(table[opt.name], _KINDS.get(opt.kind, str))
                for item in value if isinstance(value, tuple) else (value,):
                    if opt.choices:
                        one_of(*opt.choices)(item, ctx)
                out[opt.name] = value
            except Invalid as exc:
                p.add(okey, exc.problem, exc.fix)
    return out


def resolve_options(
    options: Mapping[str, object], declared: Collection[spi.Option], key: str, base_dir: str
) -> dict[str, object]:
    """Every declared option's value, secrets read now and "path" options made absolute.

    Raises `ConfigFileError` when a secret reference cannot be resolved (see `resolve_secret`).
    """
    p = Problems()
    values: dict[str, object] = {}
    for opt in declared:
        value = options.get(opt.name, opt.default)
        if opt.secret:
            env, file = (options.get(f"{opt.name}_{s}") for s in ("env", "file"))
            value = resolve_secret(
                join(key, opt.name),
                env if isinstance(env, str) else None,
                file if isinstance(file, str) else None,
                base_dir,
                p,
            )
        elif opt.kind == "path" and isinstance(value, str):
            value = resolve_path(value, base_dir)
        values[opt.name] = value
    p.raise_if_any()
    return values
