"""The kinds of reminder, named once for the config that switches them, the rules that
create them and the notifier that words them.

- Per thread (`mailmanager.reminders.rules`): `awaiting_reply` (our message got no reply),
  `needs_response` (theirs got no answer), `bounced` (our message bounced permanently).
- Per record (`mailmanager.reminders.targets`): `dormant_opportunity` (an open opportunity
  without recent exchanges), `at_risk_client` (a client silent for much longer than
  their usual rhythm).

`[reminders] rules` switches every kind but `bounced`, which is always on: a permanent
bounce says the address is wrong whatever the rules. An escalation is stored under the kind
"escalation:<kind>" of the reminder it escalates. A new kind goes here, then its rule in
`mailmanager.reminders`, its wording in the notifier's templates.
"""

from __future__ import annotations

AWAITING_REPLY = "awaiting_reply"
NEEDS_RESPONSE = "needs_response"
DORMANT_OPPORTUNITY = "dormant_opportunity"
AT_RISK_CLIENT = "at_risk_client"
BOUNCED = "bounced"

ALL = (AWAITING_REPLY, NEEDS_RESPONSE, DORMANT_OPPORTUNITY, AT_RISK_CLIENT, BOUNCED)
"""Every kind, e.g. what `[notifications] immediate` may list."""

SWITCHABLE = tuple(kind for kind in ALL if kind != BOUNCED)
"""What `[reminders] rules` may list, and its default (all on)."""

THREAD = (AWAITING_REPLY, NEEDS_RESPONSE, BOUNCED)
"""The kinds decided per thread; the others are about a CRM record."""
