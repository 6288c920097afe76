"""Notifications: reminder digests and immediate mails, sent exactly once.

- `notifier`: one digest per user per slot, immediate mails, written to the outbox;
- `digest`: rendering (Jinja2 templates in `templates/`, French and English);
- `outbox`: emails queued in the database and sent over SMTP exactly once;
- `smtp`: header sanitising, MIME building, one SMTP connection.
"""
