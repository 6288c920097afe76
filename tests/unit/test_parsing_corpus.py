"""mailmanager.parsing over the shared real-mail corpus (skipped when it is absent)."""

from __future__ import annotations

import mailbox
import time
from functools import cache
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailmanager.mail import parsing
from mailmanager.mail.parsing import ParsedMessage, Quarantined

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"shared corpus not found at {CORPUS}")

# Files that are not RFC 5322 messages at all.
NOT_MESSAGES = {
    "flanker/dkim/email.01": "empty",
    "mail-parser/mail_outlook_1": "outlook_msg_ole2",
}
VACATION = [
    *(f"sisimai-set-of-emails/maildir/bsd/rfc3834-0{i}.eml" for i in range(1, 7)),
    "bounceparser/autoreply.msg",
    "bounceparser/aol-vacation.msg",
    "bounceparser/polish-autoreply.msg",
]


@cache
def corpus() -> dict[str, bytes]:
    """Every corpus message by name ("path" or "path#n" for mbox members)."""
    if not CORPUS.is_dir():
        pytest.skip(f"shared corpus not found at {CORPUS}")
    out: dict[str, bytes] = {}
    for path in sorted(CORPUS.rglob("*")):
        if not path.is_file() or path.name == "MANIFEST.md":
            continue
        name = path.relative_to(CORPUS).as_posix()
        data = path.read_bytes()
        if data.startswith(b"From "):
            box = mailbox.mbox(str(path), create=False)
            for i, key in enumerate(box.keys()):
                out[f"{name}#{i}" if i or len(box) > 1 else name] = box.get_bytes(key)
        else:
            out[name] = data
    return out


@cache
def results() -> dict[str, ParsedMessage | Quarantined]:
    return {name: parsing.parse(raw) for name, raw in corpus().items()}


def parsed(name: str) -> ParsedMessage:
    result = results()[name]
    assert isinstance(result, ParsedMessage), (name, result)
    return result


def group(prefix: str) -> dict[str, ParsedMessage]:
    found = {n: r for n, r in results().items() if n.startswith(prefix)}
    assert found, prefix
    assert all(isinstance(r, ParsedMessage) for r in found.values())
    return {n: r for n, r in found.items() if isinstance(r, ParsedMessage)}


def test_every_message_parses_and_only_non_messages_are_quarantined() -> None:
    assert len(results()) > 2000
    quarantined = {n: r.reason for n, r in results().items() if isinstance(r, Quarantined)}
    assert quarantined == NOT_MESSAGES


def test_parsed_fields_are_sane() -> None:
    for name, msg in results().items():
        if not isinstance(msg, ParsedMessage):
            continue
        assert msg.date is None or msg.date.tzinfo is not None, name
        assert len(msg.snippet) <= parsing.SNIPPET_CHARS, name
        assert msg.message_id and " " not in msg.message_id, name
        assert msg.message_id not in msg.references, name
        for address in (*msg.from_, *msg.to, *msg.cc):
            assert parsing.normalize_address(address.email) == address.email, name


def test_sisimai_bounces_are_detected() -> None:
    bounces = {
        n: r
        for n, r in group("sisimai-set-of-emails/maildir/bsd/").items()
        if not n.rpartition("/")[2].startswith(("arf-", "rfc3834-"))
    }
    detected = [r for r in bounces.values() if r.is_bounce]
    rate = len(detected) / len(bounces)
    with_recipient = sum(1 for r in detected if r.bounce is not None and r.bounce.recipients)
    assert rate >= 0.95, f"{len(detected)}/{len(bounces)}"
    assert with_recipient / len(detected) >= 0.95, f"{with_recipient}/{len(detected)}"
    assert not any(r.is_auto_reply for r in detected)


def test_other_bounce_sources() -> None:
    bounceparser = group("bounceparser/")
    negatives = {f"bounceparser/{n}" for n in ("aol-vacation.msg", "autoreply.msg",
                                               "polish-autoreply.msg")}  # fmt: skip
    assert not any(bounceparser[n].is_bounce for n in negatives)
    rest = [r for n, r in bounceparser.items() if n not in negatives]
    assert sum(r.is_bounce for r in rest) / len(rest) >= 0.9
    for name in ("mimekit/messages/delivery-status.txt", "flanker/bounce/gmail-no-dns.eml"):
        assert parsed(name).is_bounce, name


def test_known_vacation_replies_are_auto_replies() -> None:
    for name in VACATION:
        msg = parsed(name)
        assert msg.is_auto_reply and not msg.is_bounce, name
    assert sum(parsed(n).is_out_of_office for n in VACATION) >= 7


def test_bounce_marked_auto_submitted_is_not_an_auto_reply() -> None:
    msg = parsed("bounceparser/non-autoreply.msg")
    assert msg.is_bounce and not msg.is_auto_reply
    assert msg.bounce is not None and msg.bounce.recipients == ("hbsdpphvfex@blackwebportal.com",)


def test_sisimai_negatives_and_abuse_reports() -> None:
    for name in ("is-not-bounce-01.eml", "is-not-bounce-02.eml"):
        assert not parsed(f"sisimai-set-of-emails/maildir/not/{name}").is_bounce
    arf = group("sisimai-set-of-emails/maildir/bsd/arf-")
    assert not any(r.is_bounce for r in arf.values())
    assert sum(r.is_bulk for r in arf.values()) >= 12


def test_list_mail_is_bulk() -> None:
    ponymail = group("ponymail/")
    assert all(r.is_bulk for r in ponymail.values())
    assert not any(r.is_bounce or r.is_auto_reply for r in ponymail.values())
    maven = group("ponymail/maven-dev-2017-11-listsao.mbox")
    assert {r.list_id for r in maven.values()} == {"dev.maven.apache.org"}


def test_human_replies_are_neither_noise_nor_bounce() -> None:
    for name, msg in group("talon/").items():
        assert not (msg.is_auto_reply or msg.is_bounce or msg.is_bulk), name
        assert msg.snippet, name
    assert parsed("talon/standard_replies/gmail.eml").snippet == "Hello"


def test_threads_survive_parsing() -> None:
    lkml = group("notmuch/lkml/")
    ids = {r.message_id for r in lkml.values()}
    assert len(ids) == 176  # 210 files, some of them copies (checked with the stdlib)
    linked = [r for r in lkml.values() if set(r.in_reply_to) & ids]
    assert len(linked) == 144  # In-Reply-To pointing inside the set, as the stdlib reads it


def test_pathological_messages_are_fast() -> None:
    for name in ("flanker/enclosed-endless.eml", "flanker/torture.eml",
                 "mimekit/messages/stack-overflow.txt"):  # fmt: skip
        raw = corpus()[name]
        start = time.perf_counter()
        parsing.parse(raw)
        parsing.body_text(raw)
        assert time.perf_counter() - start < 1.0, name


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_fuzz_truncated_and_damaged_real_messages(data: st.DataObject) -> None:
    names = sorted(corpus())
    raw = corpus()[data.draw(st.sampled_from(names))]
    cut = data.draw(st.integers(0, len(raw)))
    junk = data.draw(st.binary(max_size=40))
    for variant in (raw[:cut], raw[cut:], raw[:cut] + junk + raw[cut:]):
        result = parsing.parse(variant)
        assert isinstance(result, (ParsedMessage, Quarantined))
        if isinstance(result, Quarantined):
            assert not result.reason.startswith("parser_error")
