"""The organization's identity: which addresses and domains are ours, asked by every stage."""

from __future__ import annotations

import pytest

from mailmanager import config
from mailmanager.config import identity
from mailmanager.crm import records as crm
from mailmanager.matching import run as linking
from mailmanager.reminders import businesstime as bt
from mailmanager.reminders import rules

CONFIG = """
[organization]
domains = ["example.com", "Example.FR"]
[[users]]
email = "alice@example.com"
name = "Alice"
aliases = ["A.Martin@example.com", "Alice.Martin@gmail.com"]
[[users]]
email = "bob@example.com"
name = "Bob"
[[mailboxes]]
name = "alice"
connector = "maildir"
owner = "alice@example.com"
aliases = ["sales@partner-hosting.net"]
path = "/tmp/alice"
[[mailboxes]]
name = "bob"
connector = "maildir"
owner = "bob@example.com"
path = "/tmp/bob"
"""


@pytest.fixture(scope="module")
def cfg() -> config.Config:
    return config.loads(CONFIG)


@pytest.fixture(scope="module")
def ours(cfg: config.Config) -> identity.Identity:
    return identity.of(cfg)


@pytest.mark.parametrize(
    "address",
    [
        "alice@example.com",
        "bob@example.com",
        "someone@example.com",  # anyone at an organization domain
        "x@sales.example.com",  # a subdomain
        "x@eu.sales.example.com",
        "x@example.fr",  # the configuration wrote it Example.FR
        "ALICE@Example.COM",  # case
        "Someone@SALES.example.com",
        "a.martin@example.com",  # an alias
        "alice.martin@gmail.com",  # a user's alias at a free-mail domain
        "Alice.Martin@Gmail.com",
        "alicemartin@gmail.com",  # another spelling of it (Gmail ignores dots)
        "alice.martin+crm@gmail.com",  # with a +tag (stripped by default)
        "alicemartin@googlemail.com",
        "sales@partner-hosting.net",  # a mailbox's alias
    ],
)
def test_ours(ours: identity.Identity, address: str) -> None:
    assert ours.is_ours(address)


@pytest.mark.parametrize(
    "address",
    [
        "",
        "jane@acme.fr",
        "someone@gmail.com",  # a user's alias there makes that address ours, not gmail.com
        "bob@gmail.com",
        "x@notexample.com",  # ends with an organization domain's text: not under it
        "x@myexample.com",
        "x@example.com.evil.org",
        "x@example.co",
        "info@partner-hosting.net",  # only the mailbox's alias is ours at that domain
    ],
)
def test_not_ours(ours: identity.Identity, address: str) -> None:
    assert not ours.is_ours(address)


def test_org_domains_cover_subdomains_only(ours: identity.Identity) -> None:
    assert ours.is_org_domain("example.com") and ours.is_org_domain("mail.EXAMPLE.com")
    assert not ours.is_org_domain("notexample.com")
    assert not ours.is_org_domain("com")
    assert not ours.is_org_domain("gmail.com")  # a user's Gmail alias does not make it ours
    assert not identity.Identity().is_ours("alice@example.com")


def test_plus_tags_follow_the_matcher_setting(cfg: config.Config) -> None:
    kept = config.loads(CONFIG + "[matcher]\nstrip_plus_addressing = false\n")
    assert not identity.of(kept).is_ours("alice.martin+crm@gmail.com")
    assert identity.of(kept).is_ours("alicemartin@gmail.com")  # dots still ignored
    assert identity.of(cfg).is_ours("alice.martin+crm@gmail.com")


def test_made_once_per_configuration(cfg: config.Config) -> None:
    assert identity.of(cfg) is identity.of(cfg)
    assert linking.policy_for(cfg).identity is identity.of(cfg)
    other = config.loads(CONFIG.replace('"Example.FR"', '"example.org"'))
    assert identity.of(other).is_ours("x@example.org")
    assert not identity.of(cfg).is_ours("x@example.org")


def test_users_and_mailboxes(ours: identity.Identity) -> None:
    assert ours.user_addresses("alice@example.com") == (
        "alice@example.com",
        "a.martin@example.com",
        "alice.martin@gmail.com",
        "sales@partner-hosting.net",  # the alias of a mailbox she owns
    )
    assert ours.user_addresses("nobody@example.com") == ()
    # A mailbox answers for its owner only: another user's alias is not its own address,
    # while the organization's domains stay ours.
    bobs = ours.mailbox("bob")
    assert bobs.is_ours("bob@example.com") and bobs.is_ours("x@sales.example.com")
    assert not bobs.is_ours("alice.martin@gmail.com")
    alices = ours.mailbox("alice")
    assert alices.is_ours("alicemartin@gmail.com")
    assert alices.is_ours("sales@partner-hosting.net")


def test_reminders_ask_the_identity(ours: identity.Identity) -> None:
    org = rules.OrgRules(frozenset(), identity=ours)
    user = rules.UserRules(1, "alice@example.com", bt.Calendar())
    users = {"alice@example.com": user, "gone@elsewhere.org": user}
    assert not rules.is_external("x@sales.example.com", {}, org)
    assert not rules.is_external("alicemartin@gmail.com", {}, org)
    assert not rules.is_external("gone@elsewhere.org", users, org)  # a user no longer configured
    assert not rules.is_external("", {}, org)
    assert rules.is_external("x@notexample.com", users, org)
    assert rules.is_external("someone@gmail.com", users, org)


def test_crm_refuses_our_domains_and_addresses(cfg: config.Config) -> None:
    with pytest.raises(crm.CrmError, match="organization's own domains"):
        crm.clean_domain(cfg, "https://www.sales.example.com/contact")
    assert crm.clean_domain(cfg, "notexample.com") == "notexample.com"
    with pytest.raises(crm.CrmError, match="address of the organization"):
        crm.contact_key(cfg, "Someone@Example.com")
    # A user's own Gmail alias is no contact either (the matcher never links it).
    with pytest.raises(crm.CrmError, match="address of the organization"):
        crm.contact_key(cfg, "alice.martin@gmail.com")
    assert crm.contact_key(cfg, "jane@notexample.com") == "jane@notexample.com"
    assert crm.contact_key(cfg, "bob.smith@gmail.com") == "bobsmith@gmail.com"
