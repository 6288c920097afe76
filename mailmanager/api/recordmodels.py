"""The request bodies of the records routes (`api.records`), as pydantic models so that the
OpenAPI schema describes them and bad input is refused before any query (422).

Every body refuses unknown fields (a misspelt field is an error, not silently ignored),
bounds every string and list, refuses NUL characters (PostgreSQL cannot store them) and
dates without a time zone. In a create or bulk body, a field left out takes its default;
in a PATCH body, a field left out is left as it is.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

from mailmanager.services import crmbulk

MAX_ID = 2**31 - 1
_NO_NUL = r"^[^\x00]*$"


def text(most: int, least: int = 0) -> object:
    return StringConstraints(min_length=least, max_length=most, pattern=_NO_NUL)


def utc(value: datetime) -> datetime:
    """`value` in UTC; ValueError when it has no time zone or is out of range."""
    if value.tzinfo is None:
        raise ValueError("the date needs a time zone")
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("the date is out of range") from exc


def iso(value: object) -> object:
    """Only ISO 8601 text for a date: pydantic would also take a number as a Unix time."""
    if not isinstance(value, str | datetime) or (
        isinstance(value, str) and not re.match(r"\d{4}-\d{2}-\d{2}", value)
    ):
        raise ValueError("give an ISO 8601 date and time, e.g. 2026-11-25T09:00:00Z")
    return value


Id = Annotated[int, Field(ge=1, le=MAX_ID)]
When = Annotated[AwareDatetime, BeforeValidator(iso), AfterValidator(utc)]
Name = Annotated[str, text(200)]
Email = Annotated[str, text(320, 1)]
Domain = Annotated[str, text(253, 1)]
Source = Annotated[str, text(32, 1), Field(description="The CRM the record comes from.")]
ExternalId = Annotated[str, text(200, 1), Field(description="The record's id in its CRM.")]
Owner = Annotated[str, text(320, 1), Field(description="A user's e-mail address.")]
Emails = Annotated[list[Email], Field(max_length=20)]
Domains = Annotated[list[Domain], Field(max_length=50)]
Amount = Annotated[Decimal, Field(ge=0, lt=Decimal("1e12"), max_digits=14, decimal_places=2)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Reference = Annotated[str, text(64, 1)]
Status = Literal["prospect", "client"]
Stage = Literal["open", "won", "lost"]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CompanyIn(Body):
    name: Annotated[str, text(300, 1)]
    domains: Domains = []
    source: Source = "api"
    external_id: ExternalId | None = None


class CompanyPatch(Body):
    name: Annotated[str, text(300, 1)] | None = None
    add_domains: Domains = []
    remove_domains: Domains = []
    source: Source | None = None
    external_id: ExternalId | None = None


class ContactIn(Body):
    emails: Annotated[list[Email], Field(min_length=1, max_length=20)]
    first_name: Name = ""
    last_name: Name = ""
    company_id: Id | None = None
    owner: Owner | None = None
    status: Status = "prospect"
    phone: Annotated[str, text(64)] = ""
    title: Name = ""
    source: Source = "api"
    external_id: ExternalId | None = None


class ContactPatch(Body):
    first_name: Name | None = None
    last_name: Name | None = None
    company_id: Id | None = None
    owner: Owner | None = None
    status: Status | None = None
    phone: Annotated[str, text(64)] | None = None
    title: Name | None = None
    add_emails: Emails = []
    remove_emails: Emails = []
    source: Source | None = None
    external_id: ExternalId | None = None


class OpportunityIn(Body):
    title: Annotated[str, text(300, 1)]
    reference: Reference | None = Field(None, description="e.g. OPP-2041; given if left out.")
    company_id: Id | None = None
    contact_ids: Annotated[list[Id], Field(max_length=200)] = []
    owner: Owner | None = None
    stage: Stage = "open"
    pipeline_step: Annotated[str, text(64)] = ""
    amount: Amount | None = None
    currency: Currency = "EUR"
    expected_close: When | None = None
    closed_at: When | None = None
    source: Source = "api"
    external_id: ExternalId | None = None


class OpportunityPatch(Body):
    title: Annotated[str, text(300, 1)] | None = None
    reference: Reference | None = None
    company_id: Id | None = None
    contact_ids: Annotated[list[Id], Field(max_length=200)] = []
    owner: Owner | None = None
    stage: Stage | None = None
    pipeline_step: Annotated[str, text(64)] | None = None
    amount: Amount | None = None
    currency: Currency | None = None
    expected_close: When | None = None
    closed_at: When | None = None
    source: Source | None = None
    external_id: ExternalId | None = None


# --- bulk upserts: each item names its record by (source, external_id) ----------------------


class CompanyItem(Body):
    source: Source
    external_id: ExternalId
    name: Annotated[str, text(300, 1)] | None = Field(None, description="Needed for a new one.")
    domains: Domains = Field([], description="Added to the company's; none removed.")


class ContactItem(Body):
    source: Source
    external_id: ExternalId
    emails: Emails = Field([], description="Added to the contact's; none removed.")
    first_name: Name | None = None
    last_name: Name | None = None
    company_id: Id | None = None
    company_external_id: ExternalId | None = Field(None, description="The company's id in source.")
    owner: Owner | None = None
    status: Status | None = None
    phone: Annotated[str, text(64)] | None = None
    title: Name | None = None

    def item(self) -> crmbulk.ContactItem:
        return crmbulk.ContactItem(**{**self.model_dump(), "emails": tuple(self.emails)})


class OpportunityItem(Body):
    source: Source
    external_id: ExternalId
    title: Annotated[str, text(300, 1)] | None = Field(None, description="Needed for a new one.")
    reference: Reference | None = None
    company_id: Id | None = None
    company_external_id: ExternalId | None = None
    contact_ids: Annotated[list[Id], Field(max_length=200)] = []
    contact_external_ids: Annotated[list[ExternalId], Field(max_length=200)] = []
    owner: Owner | None = None
    stage: Stage | None = None
    pipeline_step: Annotated[str, text(64)] | None = None
    amount: Amount | None = None
    currency: Currency | None = None
    expected_close: When | None = None
    closed_at: When | None = None


Items = Field(min_length=1, max_length=crmbulk.MAX_ITEMS, description="At most 1,000 items.")


class CompanyBulk(Body):
    items: Annotated[list[CompanyItem], Items]


class ContactBulk(Body):
    items: Annotated[list[ContactItem], Items]


class OpportunityBulk(Body):
    items: Annotated[list[OpportunityItem], Items]


class ItemErrorOut(BaseModel):
    index: int
    field: str
    detail: str


class BulkOut(BaseModel):
    """What a bulk upsert did; `ids` are the records' ids in the order of the items."""

    created: int
    updated: int
    unchanged: int
    ids: list[int]
