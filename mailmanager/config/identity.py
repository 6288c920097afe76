"""Who "we" are: the organization's domains and every address of its users and mailboxes.

Every stage asks one question of an address: is it ours? Sync asks it to give a message
its direction, the matcher to tell correspondents from colleagues, the reminder rules to
tell mail to the outside from internal mail, the CRM to refuse our own addresses and
domains as a customer's. They all ask an `Identity`, made once per `Config` by `of`.

An address is ours when it is one of these addresses, or when its domain is one of the
organization's domains or under one: with `example.com` ours, `sales.example.com` is ours
and `notexample.com` is not. The addresses are every user's address and aliases and every
mailbox's owner and aliases, as written in the configuration and as their match keys
(`normalize.match_key` under `[matcher] strip_plus_addressing`), so that another spelling
of one of our Gmail addresses (dots, `+tag`, googlemail.com) is ours too. Case is ignored.

A user's address at a free-mail domain makes that address ours, never its domain. A mailbox
sees a narrower identity (`Identity.mailbox`): its owner's addresses only, for the direction
of its messages.
"""

from __future__ import annotations

import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from mailmanager import config as config_mod
from mailmanager.mail import normalize


@dataclass(frozen=True)
class Identity:
    """The organization's domains and addresses (see the module docstring).

    Make one with `Identity.build` (or `of(cfg)`): it adds the lower-case and match-key forms
    that `is_ours` relies on.
    """

    domains: frozenset[str] = frozenset()
    addresses: frozenset[str] = frozenset()  # as written and as match keys, lower case
    # user e-mail → that user's addresses as written: the e-mail, its aliases, the aliases of
    # the mailboxes the user owns
    users: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: types.MappingProxyType({}), hash=False
    )
    # mailbox name → the addresses of its owner it answers for: the owner, the mailbox's
    # aliases, the owner's aliases
    mailboxes: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: types.MappingProxyType({}), hash=False
    )
    strip_plus: bool = True
    # The domains of our addresses outside our domains (a user's Gmail address): an address
    # there is looked up by its match key too.
    _elsewhere: frozenset[str] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        elsewhere = {
            domain
            for domain in (a.rpartition("@")[2] for a in self.addresses)
            if not self._under_ours(domain)
        }
        if not elsewhere.isdisjoint(normalize.GMAIL_DOMAINS):
            elsewhere |= normalize.GMAIL_DOMAINS
        object.__setattr__(self, "_elsewhere", frozenset(elsewhere))

    @classmethod
    def build(
        cls,
        domains: Iterable[str] = (),
        addresses: Iterable[str] = (),
        users: Mapping[str, Iterable[str]] | None = None,
        mailboxes: Mapping[str, Iterable[str]] | None = None,
        strip_plus: bool = True,
    ) -> Identity:
        """From configuration values: `addresses` and every address of `users` are ours."""
        user_map = {u: tuple(found) for u, found in (users or {}).items()}
        written = {a.strip().lower() for a in addresses}
        written.update(a.lower() for found in user_map.values() for a in found)
        keys = {normalize.match_key(a, strip_plus) for a in written}
        return cls(
            domains=frozenset(d.strip().rstrip(".").lower() for d in domains),
            addresses=frozenset(written | {k for k in keys if k is not None}),
            users=types.MappingProxyType(user_map),
            mailboxes=types.MappingProxyType(
                {name: tuple(found) for name, found in (mailboxes or {}).items()}
            ),
            strip_plus=strip_plus,
        )

    def is_org_domain(self, domain: str) -> bool:
        """`domain` is one of the organization's domains or under one (any case)."""
        return self._under_ours(domain.lower())

    def _under_ours(self, domain: str) -> bool:  # `domain` in lower case
        return bool(self.domains) and not self.domains.isdisjoint(normalize.domain_suffixes(domain))

    def is_ours(self, address: str) -> bool:
        """`address` (as written or a match key) is ours: one of our addresses, another
        spelling of one (see `normalize.match_key`), or at an organization domain."""
        address = address.lower()
        if address in self.addresses:
            return True
        domain = address.rpartition("@")[2]
        if self._under_ours(domain):
            return True
        if domain in self._elsewhere:
            return normalize.match_key(address, self.strip_plus) in self.addresses
        return False

    def user_addresses(self, email: str) -> tuple[str, ...]:
        """The addresses of the user whose e-mail is `email`, as written; () for no user."""
        return self.users.get(email, ())

    def mailbox(self, name: str) -> Identity:
        """The identity one mailbox sees: the organization's domains, and only the addresses
        of its owner (`mailboxes`); the sync gives its messages their direction with it."""
        own = self.mailboxes.get(name, ())
        return Identity.build(self.domains, own, strip_plus=self.strip_plus)


def of(cfg: config_mod.Config) -> Identity:
    """The organization's identity under `cfg`, made once per configuration object."""
    return cfg.derived(_build)


def _build(cfg: config_mod.Config) -> Identity:
    users: dict[str, list[str]] = {u.email: [u.email, *u.aliases] for u in cfg.users}
    mailboxes: dict[str, list[str]] = {}
    for mb in cfg.mailboxes:
        users.setdefault(mb.owner, [mb.owner]).extend(mb.aliases)
        owner = cfg.user(mb.owner)
        mailboxes[mb.name] = [mb.owner, *mb.aliases, *(owner.aliases if owner else ())]
    return Identity.build(
        domains=cfg.organization.domains,
        users=users,
        mailboxes=mailboxes,
        strip_plus=cfg.matcher.strip_plus_addressing,
    )
