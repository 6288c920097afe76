"""Admin routes: mailbox status, quarantine, "sync now"."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["admin"])
