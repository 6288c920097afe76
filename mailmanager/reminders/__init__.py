"""Follow-up reminders (relances) on each user's business calendar.

Pure rules first, then the database:
- `businesstime`: working days and hours, time zones, public holidays;
- `rules`: the reminder rules of one thread; `plan`: the lifecycle, as pure functions
  (what a message's text says, French and English, is read at sync time by
  `mailmanager.mail.replies`);
- `facts`: what the rules read from the database; `targets`: reminders about records
  (dormant opportunities, clients at risk); `passes`: evaluation passes and their writes;
- `evaluation`: the entry points (a full pass, the sync hook, what the notifier reads);
- `about`: what a reminder is about as shown now (the thread's current links, its records);
- `actions`: what a user does with a reminder (snooze, dismiss, done, "expects a reply").

A new rule: its kind in `mailmanager.config.reminder_kinds`, its pure decision in `rules`
(or `targets` for a record), its settings in `mailmanager.config`, its wording in
`mailmanager.notify`'s templates.
"""
