"""The parser's and the digest's shortcuts give exactly what the general code gives."""

from __future__ import annotations

import random
from email.utils import getaddresses

from hypothesis import given, settings
from hypothesis import strategies as st

from mailmanager.mail import addresses, parsing
from mailmanager.notify import smtp

# Pieces of address lists, tricky ones included: quotes, escapes, comments, groups, routes.
_BITS = [
    "Jean", "Dupont", " ", "  ", "\t", '"', "\\", "<", ">", "(", ")", ",", ";", ":", "@", ".",
    "jean@example.fr", "a@b.c", "x.y+z@sub.example.com", "=?utf-8?q?Jos=C3=A9?=", "Näme",
    "O'Neil", "[", "]", "group:", "\u00e9",
]  # fmt: skip


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from(_BITS), max_size=12))
def test_simple_address_shapes_read_as_getaddresses_does(bits: list[str]) -> None:
    value = "".join(bits)
    pieces = addresses._split_top_level(value)
    if pieces is None:
        return
    simple = addresses._simple_pairs(pieces)
    if simple is not None:
        assert simple == getaddresses([value])


def test_the_common_shapes_take_the_shortcut() -> None:
    value = 'Jean  Dupont <jean@x.fr>, "Doe, Jane" <jane@y.com>, bob@z.org, <c@d.ee>'
    pieces = addresses._split_top_level(value)
    assert pieces is not None
    assert addresses._simple_pairs(pieces) == [
        ("Jean Dupont", "jean@x.fr"),
        ("Doe, Jane", "jane@y.com"),
        ("", "bob@z.org"),
        ("", "c@d.ee"),
    ]
    assert addresses._simple_pairs(["Jean (Sales) <j@x.fr>"]) is None  # a comment: general path


def _slow_snippet(text: str) -> str:
    """make_snippet without its prefix shortcut (the reference)."""
    cut = parsing._ATTRIBUTION_RE.search(text)
    head = text[: cut.start()] if cut is not None else text
    folded = parsing._fold(head.splitlines())
    if not folded:
        folded = " ".join(text.split())
    return parsing._clip(folded)


_WORDS = [
    "alpha", "beta", "> quoted", ">> deeper", "On Mon, Bob wrote:", "Le 3 mars, Bob a écrit :",
    "-- Original Message --", "-----Message d'origine-----", "_" * 25, "gamma" * 40, "\n",
    "\n\n", " ", "> On Tue, Ann wrote:",
]  # fmt: skip


def test_long_bodies_give_the_same_snippet_as_the_whole_text() -> None:
    rnd = random.Random(7)
    for _ in range(1500):
        text = "".join(
            rnd.choice(_WORDS) + rnd.choice([" ", "\n", "\n\n"])
            for _ in range(rnd.randint(50, 2500))
        )
        assert parsing.make_snippet(text) == _slow_snippet(text)


# Text as digests see it: names, subjects and snippets, with every kind of space and control.
_PIECES = [*"ab é=?", "  ", "\t", "\n", "\r", "\u00a0", "\u2028", "\u200e", "\x00", "\x1c",
           "\u3000", "=?utf-8?q?x?="]  # fmt: skip
_TEXT = st.lists(st.sampled_from(_PIECES), max_size=20).map("".join)


@settings(max_examples=1500, deadline=None)
@given(_TEXT, st.integers(min_value=1, max_value=40))
def test_one_line_shortcut_gives_what_the_general_path_gives(value: str, limit: int) -> None:
    general = smtp._SPACE.sub(" ", smtp._strip(value)).strip()
    general = general if len(general) <= limit else general[: limit - 1].rstrip() + "…"
    assert smtp.one_line(value, limit) == general
