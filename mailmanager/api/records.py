"""Records in: companies, contacts and opportunities (create, read, update, delete) and bulk
upsert by the CRM's own id (`source`, `external_id`).

Lists are keyset pages by (`updated_at`, `id`) (`services.crmapi`): a client syncing
"what changed since" passes `updated_since` and follows `next`. Writes need the `write`
scope; deleting needs an admin, or the owner of the contact or opportunity (403 otherwise).
Every successful write retro-links the mail of the records it touched, as the CSV import
does, within the request; its cost is in the answer's `Server-Timing: relink` header.
A bulk upsert is all or nothing (`services.crmbulk`): a refused item answers 422 with an
`errors` array of `{index, field, detail}`, and nothing is written.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from http import HTTPStatus
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, BeforeValidator
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mailmanager.api import paging, v1
from mailmanager.api import recordmodels as m
from mailmanager.services import crmapi, crmbulk, crmdelete

router = APIRouter(tags=["records"])
RecordId = Annotated[int, Path(ge=1, le=m.MAX_ID, description="The record's id.")]
T = TypeVar("T")

# In a PATCH body, `null` clears these; it is ignored for the others (they cannot be empty).
NULLABLE = {"company_id", "owner", "amount", "expected_close", "closed_at", "external_id"}


class CompanyPage(BaseModel):
    items: list[crmapi.CompanyOut]
    next: str | None


class ContactPage(BaseModel):
    items: list[crmapi.ContactOut]
    next: str | None


class OpportunityPage(BaseModel):
    items: list[crmapi.OpportunityOut]
    next: str | None


class Refused(Exception):
    """A write refused as a whole: answered as a problem detail with `errors`."""

    def __init__(self, status: int, detail: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(detail)
        self.status, self.detail, self.errors = status, detail, errors


def _problem(exc: Refused) -> Response:
    body = {
        "type": "about:blank",
        "title": HTTPStatus(exc.status).phrase,
        "status": exc.status,
        "detail": exc.detail,
        "errors": exc.errors,
    }
    return JSONResponse(body, exc.status, media_type="application/problem+json")


@contextmanager
def _write(request: Request) -> Iterator[Session]:
    """A write's transaction, its refusals translated to problem details."""
    try:
        with v1.transaction(request) as s:
            yield s
    except crmapi.MissingError as exc:
        raise HTTPException(404, str(exc)) from None
    except crmapi.ForbiddenError as exc:
        raise HTTPException(403, str(exc)) from None
    except crmbulk.BulkError as exc:
        errors = [{"index": e.index, "field": e.field, "detail": e.detail} for e in exc.errors]
        raise Refused(422, str(exc), errors) from None
    except crmapi.CrmError as exc:
        raise Refused(422, str(exc), [{"field": exc.field, "detail": str(exc)}]) from None
    except ValueError as exc:  # e.g. a domain IDNA refuses (the CSV import reports them too)
        raise Refused(422, str(exc), [{"field": "", "detail": str(exc)}]) from None
    except IntegrityError:
        # Another request wrote the same identifier between our check and our write.
        raise HTTPException(409, "a concurrent change took an identifier: try again") from None


def _run(request: Request, work: Callable[[Session], T]) -> T | Response:
    try:
        with _write(request) as s:
            return work(s)
    except Refused as exc:
        return _problem(exc)


def _patch(body: BaseModel) -> dict[str, Any]:
    given = body.model_dump(exclude_unset=True)
    return {k: v for k, v in given.items() if v is not None or k in NULLABLE}


def _list(
    request: Request, kind: str, filters: crmapi.Filters, limit: int, cursor: str | None
) -> tuple[list[Any], str | None]:
    after = paging.decode(cursor, datetime, int)
    if after is not None:
        try:
            after = (m.utc(after[0]), after[1])
        except (ValueError, TypeError, AttributeError):
            raise HTTPException(422, "the cursor is not one this API gave") from None
    state = v1.api(request)
    with v1.transaction(request) as s:
        found = crmapi.list_records(
            s, state.cfg, kind, filters, limit + 1, (after[0], after[1]) if after else None
        )
    page = found[:limit]
    last = page[-1] if len(found) > limit else None
    return page, paging.encode(last.updated_at, last.id) if last else None


Since = Annotated[
    datetime | None,
    BeforeValidator(m.iso),
    Query(description="Only records changed at or after (ISO 8601, with zone)."),
]
SourceQ = Annotated[str | None, Query(max_length=32, pattern=r"^[^\x00]*$")]
ExternalQ = Annotated[str | None, Query(max_length=200, pattern=r"^[^\x00]*$")]
CompanyQ = Annotated[int | None, Query(ge=1, le=m.MAX_ID)]


def _since(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise HTTPException(422, "updated_since: give a time zone (e.g. 2026-11-25T09:00:00Z)")
    try:
        return m.utc(value)
    except ValueError:
        raise HTTPException(422, "updated_since: the date is out of range") from None


# --- lists and single records -----------------------------------------------------------------


@router.get("/companies", summary="Companies")
def companies(
    request: Request,
    who: v1.Reader,
    limit: paging.Limit = paging.DEFAULT_LIMIT,
    cursor: paging.Cursor = None,
    updated_since: Since = None,
    source: SourceQ = None,
    external_id: ExternalQ = None,
) -> CompanyPage:
    """Companies, least recently changed first (keyset pages: follow `next`)."""
    f = crmapi.Filters(_since(updated_since), source, external_id)
    items, nxt = _list(request, "companies", f, limit, cursor)
    return CompanyPage(items=items, next=nxt)


@router.get("/contacts", summary="Contacts")
def contacts(
    request: Request,
    who: v1.Reader,
    limit: paging.Limit = paging.DEFAULT_LIMIT,
    cursor: paging.Cursor = None,
    updated_since: Since = None,
    source: SourceQ = None,
    external_id: ExternalQ = None,
    company_id: CompanyQ = None,
    email: Annotated[str | None, Query(max_length=320, pattern=r"^[^\x00]*$")] = None,
) -> ContactPage:
    """Contacts, least recently changed first; `email` finds the contact of an address."""
    f = crmapi.Filters(_since(updated_since), source, external_id, company_id, email)
    items, nxt = _list(request, "contacts", f, limit, cursor)
    return ContactPage(items=items, next=nxt)


@router.get("/opportunities", summary="Opportunities")
def opportunities(
    request: Request,
    who: v1.Reader,
    limit: paging.Limit = paging.DEFAULT_LIMIT,
    cursor: paging.Cursor = None,
    updated_since: Since = None,
    source: SourceQ = None,
    external_id: ExternalQ = None,
    company_id: CompanyQ = None,
) -> OpportunityPage:
    """Opportunities, least recently changed first."""
    f = crmapi.Filters(_since(updated_since), source, external_id, company_id)
    items, nxt = _list(request, "opportunities", f, limit, cursor)
    return OpportunityPage(items=items, next=nxt)


def _one(request: Request, kind: str, record_id: int) -> Any:
    try:
        with v1.transaction(request) as s:
            return crmapi.get_record(s, kind, record_id)
    except crmapi.MissingError as exc:
        raise HTTPException(404, str(exc)) from None


@router.get("/companies/{record_id}", summary="A company")
def company(request: Request, record_id: RecordId, who: v1.Reader) -> crmapi.CompanyOut:
    return _one(request, "companies", record_id)  # type: ignore[no-any-return]


@router.get("/contacts/{record_id}", summary="A contact")
def contact(request: Request, record_id: RecordId, who: v1.Reader) -> crmapi.ContactOut:
    return _one(request, "contacts", record_id)  # type: ignore[no-any-return]


@router.get("/opportunities/{record_id}", summary="An opportunity")
def opportunity(request: Request, record_id: RecordId, who: v1.Reader) -> crmapi.OpportunityOut:
    return _one(request, "opportunities", record_id)  # type: ignore[no-any-return]


# --- writes ----------------------------------------------------------------------------------


def _create(request: Request, who: Any, kind: str, body: BaseModel) -> Any:
    state = v1.api(request)
    values = body.model_dump(exclude_none=True)
    return _run(
        request,
        lambda s: crmapi.create_record(s, state.cfg, who.viewer, kind, values, state.clock()),
    )


def _update(request: Request, who: Any, kind: str, record_id: int, body: BaseModel) -> Any:
    state = v1.api(request)
    values = _patch(body)
    return _run(
        request,
        lambda s: crmapi.update_record(
            s, state.cfg, who.viewer, kind, record_id, values, state.clock()
        ),
    )


def _delete(request: Request, who: Any, kind: str, record_id: int) -> Response:
    state = v1.api(request)
    with _write(request) as s:
        crmdelete.delete_record(s, state.cfg, who.viewer, kind, record_id, state.clock())
    return Response(status_code=204)


CREATED: dict[str, Any] = {"status_code": 201}


@router.post("/companies", summary="Create a company", response_model=crmapi.CompanyOut, **CREATED)
def create_company(request: Request, body: m.CompanyIn, who: v1.Writer) -> Any:
    """A new company; its domains link the mail from them (retro-linking)."""
    return _create(request, who, "companies", body)


@router.post("/contacts", summary="Create a contact", response_model=crmapi.ContactOut, **CREATED)
def create_contact(request: Request, body: m.ContactIn, who: v1.Writer) -> Any:
    """A new contact; the mail from and to its addresses is linked to it (retro-linking)."""
    return _create(request, who, "contacts", body)


@router.post(
    "/opportunities",
    summary="Create an opportunity",
    response_model=crmapi.OpportunityOut,
    **CREATED,
)
def create_opportunity(request: Request, body: m.OpportunityIn, who: v1.Writer) -> Any:
    """A new opportunity (a reference is given when left out)."""
    return _create(request, who, "opportunities", body)


@router.patch(
    "/companies/{record_id}",
    summary="Change a company",
    response_model=crmapi.CompanyOut,
)
def update_company(
    request: Request, record_id: RecordId, body: m.CompanyPatch, who: v1.Writer
) -> Any:
    return _update(request, who, "companies", record_id, body)


@router.patch(
    "/contacts/{record_id}",
    summary="Change a contact",
    response_model=crmapi.ContactOut,
)
def update_contact(
    request: Request, record_id: RecordId, body: m.ContactPatch, who: v1.Writer
) -> Any:
    return _update(request, who, "contacts", record_id, body)


@router.patch(
    "/opportunities/{record_id}",
    summary="Change an opportunity",
    response_model=crmapi.OpportunityOut,
)
def update_opportunity(
    request: Request, record_id: RecordId, body: m.OpportunityPatch, who: v1.Writer
) -> Any:
    return _update(request, who, "opportunities", record_id, body)


@router.delete("/companies/{record_id}", summary="Delete a company", status_code=204)
def delete_company(request: Request, record_id: RecordId, who: v1.Writer) -> Response:
    """Admins only. Its contacts and opportunities stay, without a company."""
    return _delete(request, who, "companies", record_id)


@router.delete("/contacts/{record_id}", summary="Delete a contact", status_code=204)
def delete_contact(request: Request, record_id: RecordId, who: v1.Writer) -> Response:
    """Admins, or the contact's owner. Its mail is matched again."""
    return _delete(request, who, "contacts", record_id)


@router.delete("/opportunities/{record_id}", summary="Delete an opportunity", status_code=204)
def delete_opportunity(request: Request, record_id: RecordId, who: v1.Writer) -> Response:
    """Admins, or the opportunity's owner."""
    return _delete(request, who, "opportunities", record_id)


# --- bulk upserts ----------------------------------------------------------------------------


def _bulk(request: Request, work: Callable[[Session, datetime], crmbulk.BulkResult]) -> Any:
    now = v1.api(request).clock()
    started = time.perf_counter()
    done = _run(request, lambda s: work(s, now))
    if isinstance(done, Response):
        return done
    total = (time.perf_counter() - started) * 1000
    timing = f"relink;dur={done.relink_seconds * 1000:.1f}, total;dur={total:.1f}"
    out = m.BulkOut(
        created=done.created, updated=done.updated, unchanged=done.unchanged, ids=done.ids
    )
    return JSONResponse(out.model_dump(), headers={"Server-Timing": timing})


BULK: dict[str, Any] = {"response_model": m.BulkOut}


@router.post("/companies/bulk", summary="Upsert companies", **BULK)
def bulk_companies(request: Request, body: m.CompanyBulk, who: v1.Writer) -> Any:
    """Create or update up to 1,000 companies by (source, external_id): all or none."""
    cfg, items = v1.api(request).cfg, [i.model_dump(exclude_none=True) for i in body.items]
    return _bulk(
        request, lambda s, now: crmbulk.upsert_each(s, cfg, who.viewer, "companies", items, now)
    )


@router.post("/contacts/bulk", summary="Upsert contacts", **BULK)
def bulk_contacts(request: Request, body: m.ContactBulk, who: v1.Writer) -> Any:
    """Create or update up to 1,000 contacts by (source, external_id): all or none. A
    contact names its company by id or by the company's `external_id` in the same source,
    its owner by e-mail; its addresses are added to those it has."""
    cfg, items = v1.api(request).cfg, [i.item() for i in body.items]
    return _bulk(request, lambda s, now: crmbulk.upsert_contacts(s, cfg, who.viewer, items, now))


@router.post("/opportunities/bulk", summary="Upsert opportunities", **BULK)
def bulk_opportunities(request: Request, body: m.OpportunityBulk, who: v1.Writer) -> Any:
    """Create or update up to 1,000 opportunities by (source, external_id): all or none.
    Company and contacts by id or by their `external_id` in the same source."""
    cfg, items = v1.api(request).cfg, [i.model_dump(exclude_none=True) for i in body.items]
    return _bulk(
        request, lambda s, now: crmbulk.upsert_each(s, cfg, who.viewer, "opportunities", items, now)
    )
