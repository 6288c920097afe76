"""CSV import/export on a real database, with files as spreadsheets write them."""

from __future__ import annotations

import codecs
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from mailmanager import config
from mailmanager.crm import csvio, opportunities
from mailmanager.crm import records as crm
from mailmanager.crm import views as crmviews
from mailmanager.db import models
from mailmanager.db.models import Company, Contact


def write(path: Path, text: str, encoding: str, bom: bool = False) -> bytes:
    """Write `text` with CRLF line ends as Excel does; return the file's bytes."""
    data = text.replace("\n", "\r\n").encode(encoding)
    path.write_bytes((codecs.BOM_UTF8 if bom else b"") + data)
    return path.read_bytes()


def count(s: Session, model: type[models.Base]) -> int:
    return int(s.scalar(sa.select(sa.func.count()).select_from(model)) or 0)


FRENCH_COMPANIES = """Nom;Domaines;Ville
Société Générale d'Équipement;sge.fr | sge-groupe.com;Lyon
"Acme; Industrie";acme-industrie.fr;Paris
Café Crème SARL;https://www.cafe-creme.fr/;Nantes
"""


@pytest.mark.parametrize(("encoding", "bom"), [("cp1252", False), ("utf-8", True)])
def test_french_excel_companies(
    s: Session, cfg: config.Config, tmp_path: Path, encoding: str, bom: bool
) -> None:
    data = write(tmp_path / "societes.csv", FRENCH_COMPANIES, encoding, bom)
    report = csvio.import_csv(s, cfg, "companies", data)
    s.commit()
    assert report.errors == () and report.applied
    assert (report.created, report.updated, report.delimiter) == (3, 0, ";")
    assert report.encoding == ("cp1252" if encoding == "cp1252" else "utf-8-sig")
    assert report.ignored_columns == ("Ville",)
    views = {v.name: v.domains for v in crmviews.companies(s)}
    assert views == {
        "Acme; Industrie": ("acme-industrie.fr",),
        "Café Crème SARL": ("cafe-creme.fr",),
        "Société Générale d'Équipement": ("sge.fr", "sge-groupe.com"),
    }
    # the same file again changes nothing; a renamed case is an update of the same company
    again = csvio.import_csv(s, cfg, "companies", data)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 3)
    upper = csvio.import_csv(s, cfg, "companies", b"name,domains\nCAFE CREME SARL,\n")
    assert (upper.created, upper.unchanged) == (1, 0)  # accents differ: another name
    s.rollback()


def test_english_utf8_contacts_with_owner_company_and_several_addresses(
    s: Session, cfg: config.Config, tmp_path: Path
) -> None:
    text = (
        "first_name,last_name,email,company,owner,status,phone\n"
        'Jean,Dupont,"jean.dupont@acme-industrie.fr;J.Dupont@gmail.com",Acme,'
        "alice@example.com,client,+33 6 12 34 56 78\n"
        "Ольга,Иванова,olga@пример.рф,Пример,bob@example.com,prospect,\n"
    )
    data = write(tmp_path / "contacts.csv", text, "utf-8")
    report = csvio.import_csv(s, cfg, "contacts", data)
    s.commit()
    assert report.errors == ()
    assert (report.created, report.delimiter, report.encoding) == (2, ",", "utf-8")
    acme, primer = crm.find_company(s, "acme"), crm.find_company(s, "ПРИМЕР")
    assert report.notes == (
        (2, f"company 'Acme' created (#{acme.id})"),
        (3, f"company 'Пример' created (#{primer.id})"),
    )
    jean = crm.find_contact(s, cfg, "jdupont@gmail.com")
    view = crmviews.contact_views(s, [jean])[0]
    assert view.emails == ("jean.dupont@acme-industrie.fr", "J.Dupont@gmail.com")
    assert (view.company, view.owner, view.status, view.phone, view.source) == (
        "Acme",
        "alice@example.com",
        "client",
        "+33 6 12 34 56 78",
        "import",
    )
    olga = crm.find_contact(s, cfg, "olga@xn--e1afmkfd.xn--p1ai")
    assert (olga.first_name, olga.last_name) == ("Ольга", "Иванова")


def test_a_bad_row_on_line_5_imports_nothing_and_names_line_5(
    s: Session, cfg: config.Config, tmp_path: Path
) -> None:
    text = (
        "Prénom;Nom;E-mail;Société;Propriétaire\n"
        "Jean;Dupont;jean@acme.fr;Acme;alice@example.com\n"
        'Marie;"Curie\n(née Skłodowska)";marie@acme.fr;Acme;alice@example.com\n'
        "Paul;Martin;paul at acme.fr;Acme;bob@example.com\n"
        "Luc;Petit;luc@acme.fr;Acme;carol@example.com\n"
        "Eve;Noire;eve@acme.fr;Acme;alice@example.com\n"
    )
    data = write(tmp_path / "contacts.csv", text, "utf-8", bom=True)
    report = csvio.import_csv(s, cfg, "contacts", data)
    s.commit()
    assert not report.applied
    # Marie's quoted last name spans lines 3-4, so Paul's row is on line 5 of the file
    assert report.errors == (
        (5, "'paul at acme.fr' is not an e-mail address"),
        (6, "'carol@example.com' is not a user: add it to [[users]] in the config"),
    )
    assert count(s, Contact) == 0 and count(s, Company) == 0
    assert count(s, models.ContactEmail) == 0
    fixed = data.replace(b"paul at ", b"paul@").replace(b"carol@", b"bob@")
    dry = csvio.import_csv(s, cfg, "contacts", fixed, dry_run=True)
    s.commit()
    assert (dry.errors, dry.created, dry.applied) == ((), 5, False)
    assert count(s, Contact) == 0


def test_contacts_sharing_an_address_are_merged(
    s: Session, cfg: config.Config, tmp_path: Path
) -> None:
    a = crm.create_contact(s, cfg, ["jean.dupont@acme.fr"], "Jean", "Dupont")
    b = crm.create_contact(s, cfg, ["jdupont@gmail.com"], "", "", phone="0102030405")
    c = crm.create_contact(s, cfg, ["other@acme.fr"], "Other", "", external_id="CRM-9")
    s.commit()
    text = (
        "external_id,first_name,last_name,email\n"
        "CRM-7,Jean,Dupont,jean.dupont@acme.fr|j.dupont+crm@gmail.com\n"
        "CRM-9,Other,Person,other@acme.fr\n"
    )
    report = csvio.import_csv(s, cfg, "contacts", write(tmp_path / "c.csv", text, "utf-8"))
    s.commit()
    assert report.errors == ()
    assert (report.created, report.updated, report.merged) == (0, 2, 1)
    assert report.notes == ((2, f"contact #{b.id} merged into #{a.id}: they share an address"),)
    assert s.get(Contact, b.id) is None
    merged = s.get_one(Contact, a.id)
    assert (merged.external_id, merged.phone) == ("CRM-7", "0102030405")
    assert s.get_one(Contact, c.id).last_name == "Person"
    merges = s.scalars(sa.select(models.AuditLog.action)).all()
    assert merges.count("contact.merge") == 1 and "import.contacts" in merges


def test_opportunities_french_amounts_stages_and_contacts(
    s: Session, cfg: config.Config, tmp_path: Path
) -> None:
    crm.create_contact(s, cfg, ["jean@acme.fr"], "Jean")
    s.commit()
    text = (
        "Référence;Intitulé;Entreprise;Contacts;Responsable;Étape;Montant;Date de clôture\n"
        "opp-2041;Portes coupe-feu;Acme;jean@acme.fr, marie@acme.fr;alice@example.com;"
        "Négociation;12 500,50 €;31/03/2027\n"
        "OPP-2042;Maintenance;Acme;jean@acme.fr;bob@example.com;Gagnée;1.234,5;\n"
        ";Sans référence;Beta;;alice@example.com;perdue;900;\n"
    )
    data = write(tmp_path / "opps.csv", text, "cp1252")
    report = csvio.import_csv(s, cfg, "opportunities", data)
    s.commit()
    assert report.errors == ()
    assert report.created == 3
    views = {v.reference: v for v in crmviews.opportunities(s)}
    o = views["OPP-2041"]
    assert (o.stage, o.pipeline_step, o.amount, o.currency) == (
        "open",
        "Négociation",
        "12500.50",
        "EUR",
    )
    assert (o.expected_close, o.owner, o.company) == ("2027-03-31", "alice@example.com", "Acme")
    assert o.contacts == ("jean@acme.fr", "marie@acme.fr")
    assert (views["OPP-2042"].stage, views["OPP-2042"].amount) == ("won", "1234.50")
    assert views["OPP-2043"].title == "Sans référence" and views["OPP-2043"].stage == "lost"
    assert (4, "reference OPP-2043 given") in report.notes
    marie = crm.find_contact(s, cfg, "marie@acme.fr")
    assert marie.company_id == crm.find_company(s, "Acme").id
    # re-import: matched by reference (and by title + company without one), nothing changes
    again = csvio.import_csv(s, cfg, "opportunities", data)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 3)
    assert opportunities.find(s, "OPP-2041").amount == Decimal("12500.50")


def test_export_then_import_round_trips_and_defuses_formulas(
    s: Session, cfg: config.Config, tmp_path: Path
) -> None:
    acme = crm.create_company(s, cfg, "Acme, Inc.", ["acme.fr", "acme.com"])
    jean = crm.create_contact(
        s, cfg, ["Jean@Acme.fr"], "=HYPERLINK(\"http://x\")", "Dupont", company=acme,
        owner=crm.find_user(s, cfg, "alice@example.com"), phone="+33 1 02 03 04 05",
    )  # fmt: skip
    opportunities.save(
        s, cfg, None,
        {"title": "Portes", "reference": "OPP-7", "amount": Decimal("12500.5"),
         "company_id": acme.id, "stage": "won"},
        [jean],
    )  # fmt: skip
    s.commit()
    exported = {k: csvio.export_csv(s, k) for k in csvio.KINDS}
    assert exported["companies"] == 'name,domains,external_id\r\n"Acme, Inc.",acme.fr|acme.com,\r\n'
    contact_line = exported["contacts"].splitlines()[1]
    assert (
        contact_line.startswith('"\'=HYPERLINK(""http://x"")"')
        and ",+33 1 02 03 04 05," in contact_line
    )
    assert exported["opportunities"].splitlines()[1] == (
        'OPP-7,Portes,"Acme, Inc.",Jean@Acme.fr,,won,,12500.50,EUR,'
    )
    semicolon = csvio.export_csv(s, "contacts", ";")
    assert semicolon.splitlines()[0].count(";") == 9
    for kind, text in exported.items():
        report = csvio.import_csv(s, cfg, kind, ("\ufeff" + text).encode("utf-8"))
        assert report.errors == () and (report.created, report.updated) == (0, 0), kind
        assert report.unchanged == 1
    assert s.get_one(Contact, jean.id).first_name == '=HYPERLINK("http://x")'


def test_unreadable_files_are_refused_whole(s: Session, cfg: config.Config) -> None:
    with pytest.raises(csvio.CsvError, match="empty"):
        csvio.import_csv(s, cfg, "contacts", b"")
    with pytest.raises(csvio.CsvError, match=r"line 1: no email .*columns found: Nom, Prénom"):
        csvio.import_csv(s, cfg, "contacts", "Nom;Prénom\nDupont;Jean\n".encode())
    with pytest.raises(csvio.CsvError, match="no name column"):
        csvio.import_csv(s, cfg, "companies", b"domains\nacme.fr\n")
    report = csvio.import_csv(s, cfg, "companies", b"sep=,\nname,domains\nGmail fans,gmail.com\n")
    assert report.errors == ((3, "gmail.com is a free-mail domain: it never identifies a company"),)
