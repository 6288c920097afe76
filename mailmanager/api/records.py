"""Records in: companies, contacts and opportunities (create, read, update, delete) and bulk
upsert by the CRM's own id (`external_id`)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["records"])
