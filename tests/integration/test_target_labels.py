"""`curation.target_labels` (one query for the labels of a page of threads) names every
record exactly as `curation.target_label` names it alone: contacts with and without names
or addresses, opportunities with and without a reference, deleted records, kind "any";
and more contacts than one SQLite slice (500) holds."""

from __future__ import annotations

from sqlalchemy.orm import Session

from mailmanager.db import models
from mailmanager.services import curation


def test_target_labels_name_each_record_as_target_label_does(s: Session) -> None:
    acme = models.Company(name="Acme « Été »")
    blank = models.Company(name="")
    s.add_all([acme, blank])
    s.flush()
    opps = [
        models.Opportunity(reference="OPP-12", title="Renouvellement", company_id=acme.id),
        models.Opportunity(reference=None, title="Sans référence"),
        models.Opportunity(reference="OPP-13", title=""),
    ]
    people = [
        ("Jane", "Doe", [("jane@acme.com", ""), ("j.doe@acme.com", "")]),
        ("", "", [("anon@acme.com", "Anon@ACME.com")]),
        ("Zoé", "", []),
        ("", "", []),
        ("Li", "Wei", [("second@acme.com", ""), ("first@acme.com", "")]),
    ]
    contacts = []
    for first, last, addresses in people:
        contact = models.Contact(first_name=first, last_name=last)
        s.add(contact)
        s.flush()
        for email, display in addresses:
            s.add(models.ContactEmail(contact_id=contact.id, email=email, display=display))
            s.flush()  # the ids give the order: the first address is the label's
        contacts.append(contact)
    many = [models.Contact(first_name=f"P{n}", last_name="Bulk") for n in range(520)]
    s.add_all([*opps, *many])
    s.flush()
    targets = {("company", acme.id), ("company", blank.id), ("company", 999_999)}
    targets |= {("opportunity", o.id) for o in opps} | {("opportunity", 888_888)}
    targets |= {("contact", c.id) for c in [*contacts, *many]} | {("contact", 777_777)}
    targets |= {("any", 0)}

    labels = curation.target_labels(s, targets)

    assert labels == {(kind, rid): curation.target_label(s, kind, rid) for kind, rid in targets}
    assert labels["contact", contacts[0].id] == "Jane Doe <jane@acme.com>"
    assert labels["contact", contacts[1].id] == "Anon@ACME.com"
    assert labels["contact", contacts[4].id] == "Li Wei <second@acme.com>"
    assert labels["opportunity", opps[1].id] == f"#{opps[1].id} Sans référence"
    assert labels["company", 999_999] == "company #999999 (deleted)"
    assert curation.target_labels(s, set()) == {}
