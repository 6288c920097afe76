"""Data out: threads, messages (metadata, content, raw `.eml`), a record's timeline, links and
their explanation, the review queue, reminder actions, engagement and KPI figures."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["mail"])
