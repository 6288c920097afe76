"""The web workspace served by `mailmanager web` (issue #14): server-rendered pages over the
`services` layer, for salespeople (their follow-ups, a client's whole conversation), managers
(the figures) and admins (connectors, quarantine, users)."""
