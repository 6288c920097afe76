"""Mail as data: bytes and text in, facts out. Pure functions, no database, no I/O.

- `parsing` (over `mime`, `classify`, `addresses`, `replies`): raw RFC 822 bytes →
  `ParsedMessage`;
- `replies`: what a message's text says about replies (a question? back when?), for the
  reminder rules;
- `normalize`: addresses and domains as the CRM and the matcher compare them;
- `threads`: which messages form one conversation.
"""
