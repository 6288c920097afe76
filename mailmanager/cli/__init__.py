"""The `mailmanager` command line: a click application and its command groups.

`app` defines the `mailmanager` group, the helpers every command shares (`State`,
`database`, `fail`, `emit_json`, exit codes) and `COMMANDS`, the one list of the commands
and of the module each lives in, imported when the command runs (`lazy`). One module per
area: `admin` (init, config, db), `auth` (auth, mailbox, secrets), `syncing` (sync, run),
`browse` (status, threads, messages), `crm` (companies, contacts, opportunities, import,
export), `matching` (match, explain), `curation` (link, unlink, review, suggestions),
`timeline` (timeline, engagement, links), `reminders`, `notify` (digest, outbox, reminders
preview). Commands read and write through `mailmanager.services` and the area packages'
public functions.
"""
