"""Webhook subscriptions (admin): create, list, delete, send a test event, last deliveries."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["webhooks"])
