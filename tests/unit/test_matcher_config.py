"""The `[matcher]` section and per-user blocklists: defaults, normalisation, errors."""

from __future__ import annotations

import re

import pytest

from mailmanager import config
from mailmanager.matching import run as linking

USERS = """
[organization]
domains = ["example.com"]
[[users]]
email = "alice@example.com"
name = "Alice"
aliases = ["A.Martin@example.com"]
"""


def test_defaults_and_policy() -> None:
    cfg = config.loads(USERS)
    m = cfg.matcher
    assert (m.auto_create, m.multiple_opportunities, m.retro_window_days) == (
        "none",
        "only_if_one",
        365,
    )
    assert m.strip_plus_addressing and m.suggestions and m.blocklist == ()
    policy = linking.policy_for(cfg)
    assert policy.opportunity_pattern.flags & re.IGNORECASE
    assert policy.opportunity_pattern.search("Re: [opp-2041] devis")
    assert {"alice@example.com", "a.martin@example.com"} <= policy.identity.addresses
    assert policy.identity.domains == frozenset({"example.com"})
    assert linking.policy_for(cfg) is policy  # made once per configuration object


def test_values_are_normalised() -> None:
    cfg = config.loads(
        USERS.replace('name = "Alice"', 'name = "Alice"\nblocklist = ["@Doctor.FR"]')
        + """
[matcher]
opportunity_pattern = "#(DEAL-\\\\d+)"
auto_create = "sent"
multiple_opportunities = "thread_sticky"
retro_window_days = 30
blocklist = ["Jane@Acme.COM", "@bücher.de"]
strip_plus_addressing = false
"""
    )
    assert cfg.matcher.blocklist == ("jane@acme.com", "@xn--bcher-kva.de")
    assert cfg.users[0].blocklist == ("@doctor.fr",)
    policy = linking.policy_for(cfg)
    assert policy.blocklist.blocks("x@shop.xn--bcher-kva.de")
    assert policy.user_blocklists["alice@example.com"].blocks("dr@doctor.fr")
    assert policy.opportunity_pattern.search("Re: #DEAL-12")[1] == "DEAL-12"  # type: ignore[index]


@pytest.mark.parametrize(
    ("body", "key", "words"),
    [
        ('opportunity_pattern = "(OPP"', "matcher.opportunity_pattern", "regular expression"),
        ('opportunity_pattern = "(a)(b)"', "matcher.opportunity_pattern", "capture groups"),
        ('auto_create = "always"', "matcher.auto_create", "sent_and_received"),
        ('multiple_opportunities = "first"', "matcher.multiple_opportunities", "thread_sticky"),
        ("retro_window_days = -1", "matcher.retro_window_days", ">= 0"),
        ('blocklist = ["acme.com"]', "matcher.blocklist", "@domain"),
        ("strip_plus_addressing = 1", "matcher.strip_plus_addressing", "true or false"),
        ('auto_creat = "none"', "matcher.auto_creat", "auto_create"),
    ],
)
def test_errors_name_the_key_and_the_fix(body: str, key: str, words: str) -> None:
    with pytest.raises(config.ConfigFileError) as err:
        config.loads(USERS + "[matcher]\n" + body + "\n")
    [problem] = err.value.errors
    assert problem.key == key
    assert words in str(problem)
