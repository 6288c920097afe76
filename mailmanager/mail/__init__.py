"""Mail as data: bytes and text in, facts out. Pure functions, no database, no I/O.

- `parsing` (over `mime`, `classify`, `addresses`): raw RFC 822 bytes → `ParsedMessage`;
- `normalize`: addresses and domains as the CRM and the matcher compare them;
- `threads`: which messages form one conversation.
"""
