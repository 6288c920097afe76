"""The `mailmanager` command line: a click application and its command groups.

`app` defines the `mailmanager` group, the shared helpers (`State`, `database`, `fail`,
`emit_json`, exit codes) and the core commands (init, config, db, sync, run, status, threads,
messages, mailbox); each other module adds one feature area's commands through
`register(main: click.Group) -> None`, called by `app` once the group exists. Commands read and
write through `mailmanager.services` and the area packages' public functions.
"""
