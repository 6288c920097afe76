"""What the token's user does with a follow-up (write scope), as "My follow-ups" offers it:

    POST /reminders/{id}/snooze     {"until": "2026-12-01T08:00:00Z"} or {"business_days": 3}
    POST /reminders/{id}/done
    POST /reminders/{id}/dismiss

Only the caller's own follow-ups, or those of the users they manage, as the page allows
(`services.followups`): any other id is 404, nothing changed. A snooze until a date-time
ends then, or less than an hour later (a snooze counts whole hours); one of business days
counts them on the reminder owner's calendar. Each answer is the follow-up as it is now;
the audit log records who acted (`api:<email>`). (`GET /reminders` lists them: `api.v1`.)
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field, model_validator

from mailmanager.api import problems, v1
from mailmanager.reminders import actions
from mailmanager.services import followups

router = APIRouter(tags=["reminders"])


class Snooze(BaseModel):
    """Until when: a date-time (with its time zone), or a number of business days."""

    until: problems.Instant = None
    business_days: Annotated[int | None, Field(ge=1, le=250)] = None

    @model_validator(mode="after")
    def one_of(self) -> Snooze:
        if (self.until is None) == (self.business_days is None):
            raise ValueError("give either until or business_days")
        return self


def _act(
    request: Request, who: v1.Writer, reminder_id: int, verb: str, how: Snooze | None
) -> followups.Followup:
    state = v1.api(request)
    now = state.clock()
    try:
        with v1.transaction(request) as s:
            if how is None:
                followups.close(s, who.viewer, [reminder_id], verb, via="api")
            else:
                followups.snooze_for(
                    s, state.cfg, who.viewer, reminder_id, _duration(how, now), now
                )
            return followups.followup(s, state.cfg, who.viewer, reminder_id, now)
    except followups.NotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except actions.ReminderActionError as exc:
        raise HTTPException(409, str(exc)) from None


def _duration(how: Snooze, now: datetime) -> str:
    """`how` as an `actions.parse_duration` text."""
    if how.business_days is not None:
        return f"{how.business_days}bd"
    assert how.until is not None
    hours = math.ceil((how.until - now) / timedelta(hours=1))
    if hours < 1:
        raise HTTPException(422, "until: give a time in the future")
    if hours > 24 * 366:
        raise HTTPException(422, "until: at most a year from now")
    return f"{hours}h"


@router.post(
    "/reminders/{reminder_id}/snooze", summary="Snooze a follow-up", responses=problems.BAD_BODY
)
def snooze(
    request: Request, reminder_id: problems.Id, who: v1.Writer, how: Snooze
) -> followups.Followup:
    """Snooze an open follow-up: it is due again at `until` (or within the hour after:
    snoozes count whole hours) or
    after `business_days` of its owner's working days. 409 when it is closed."""
    return _act(request, who, reminder_id, "snooze", how)


@router.post("/reminders/{reminder_id}/done", summary="Mark done")
def done(request: Request, reminder_id: problems.Id, who: v1.Writer) -> followups.Followup:
    """Mark a follow-up done: it does not come back for this conversation's turn."""
    return _act(request, who, reminder_id, "done", None)


@router.post("/reminders/{reminder_id}/dismiss", summary="Dismiss")
def dismiss(request: Request, reminder_id: problems.Id, who: v1.Writer) -> followups.Followup:
    """Dismiss a follow-up: nothing to do; it does not come back for this turn."""
    return _act(request, who, reminder_id, "dismissed", None)
