"""Engagement figures from (thread, time, direction) triples: windows, replies, RFM, segments."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mailmanager.services.engagement import summarize

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def test_windows_last_messages_and_median_replies_each_way() -> None:
    rows = [
        (1, ago(100), "outbound"),
        (1, ago(99), "inbound"),  # they answered after 24 h
        (1, ago(98.5), "outbound"),  # we answered after 12 h
        (2, ago(20), "inbound"),
        (2, ago(19.75), "inbound"),  # same turn: the reply counts from the first one
        (2, ago(19.5), "outbound"),  # we answered after 12 h
        (3, ago(5), "outbound"),  # no answer yet
    ]
    e = summarize(rows, NOW)
    assert (e.last_inbound, e.last_outbound) == (ago(19.75), ago(5))
    assert (e.exchanges_30, e.exchanges_90, e.exchanges_365) == (4, 4, 7)
    assert e.threads_365 == 3
    assert e.median_reply_ours == timedelta(hours=12)
    assert e.median_reply_theirs == timedelta(hours=24)
    assert (e.recency, e.frequency, e.volume) == (5, 3, 2)
    assert e.rfm == "532" and e.score == 10 and e.segment == "active"


def test_segments() -> None:
    vip = [(t, ago(t % 7 + 0.1 * i), "inbound") for t in range(12) for i in range(5)]
    assert summarize(vip, NOW).segment == "vip"
    assert summarize([(1, ago(60), "inbound")], NOW).segment == "at_risk"
    assert summarize([(1, ago(400), "inbound")], NOW).segment == "dormant"
    never = summarize([], NOW)
    assert never.segment == "dormant" and never.rfm == "111" and never.last_inbound is None
    assert never.as_dict()["median_reply_ours_hours"] is None
