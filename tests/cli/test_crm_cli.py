"""The CRM commands run as a subprocess against a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from tests.cli.helpers import cli, cli_json
from tests.conftest import ConfigWriter

CONTACTS_FR = (
    "Prénom;Nom;Courriel;Entreprise;Responsable;Statut\r\n"
    "Jean;Dupont;jean.dupont@acme-industrie.fr;ACME Industrie;alice@example.com;Client\r\n"
    "Hélène;Çelik;h.celik@gmail.com | helene@acme-industrie.fr;acme industrie;bob@example.com;\r\n"
)


@pytest.fixture
def cfg(db_url: str, write_config: ConfigWriter) -> Path:
    return write_config(db_url, "")


def test_companies_contacts_and_opportunities_from_the_command_line(cfg: Path) -> None:
    out = cli("companies", "add", "ACME Industrie", "-d", "acme-industrie.fr", config=cfg)
    assert "created" in out.stdout

    cli(
        "contacts", "add", "Jean.Dupont@ACME-industrie.fr", "--first-name", "Jean",
        "--last-name", "Dupont", "--company", "acme-industrie.fr", "--owner", "alice@example.com",
        config=cfg,
    )  # fmt: skip
    unknown = cli("contacts", "add", "x@acme.fr", "--owner", "carol@example.com", config=cfg,
                  check=False)  # fmt: skip
    assert unknown.returncode == 1 and "carol@example.com" in unknown.stderr
    [jean] = cli_json("contacts", "list", config=cfg)
    assert jean["emails"] == ["Jean.Dupont@ACME-industrie.fr"]
    assert (jean["company"], jean["owner"]) == ("ACME Industrie", "alice@example.com")

    cli(
        "opportunities", "add", "Portes coupe-feu", "--company", "ACME Industrie",
        "--contact", "jean.dupont@acme-industrie.fr", "--amount", "12 500,50",
        "--expected-close", "31/03/2027", config=cfg,
    )  # fmt: skip
    closed = cli("opportunities", "close", "opp-1001", "--won", config=cfg)
    assert closed.stdout.strip() == "OPP-1001 closed as won"
    [opp] = cli_json("opportunities", "list", "--stage", "won", config=cfg)
    assert (opp["reference"], opp["amount"], opp["expected_close"]) == (
        "OPP-1001",
        "12500.50",
        "2027-03-31",
    )
    shown = cli_json("companies", "show", "acme industrie", config=cfg)
    assert shown["domains"] == ["acme-industrie.fr"] and shown["contacts"] == 1
    assert [o["reference"] for o in shown["opportunity_list"]] == ["OPP-1001"]
    contact = cli_json("contacts", "show", "jean.dupont@acme-industrie.fr", config=cfg)
    assert [o["stage"] for o in contact["opportunities"]] == ["won"]


def test_import_export_and_merge(cfg: Path, tmp_path: Path) -> None:
    src = tmp_path / "contacts.csv"
    src.write_bytes(CONTACTS_FR.encode("cp1252"))
    dry = cli("import", "contacts", str(src), "--dry-run", config=cfg)
    assert "2 created" in dry.stdout and "dry run" in dry.stdout
    assert cli_json("contacts", "list", config=cfg) == []

    report = cli_json("import", "contacts", str(src), config=cfg)
    assert (report["created"], report["applied"], report["encoding"]) == (2, True, "cp1252")

    out = tmp_path / "export.csv"
    cli("export", "contacts", str(out), "--delimiter", ";", config=cfg)
    data = out.read_bytes()
    assert data.startswith(codecs.BOM_UTF8)
    lines = data.decode("utf-8-sig").splitlines()
    assert lines[0].startswith("first_name;last_name;email;company;owner")
    assert lines[1].startswith("Jean;Dupont;jean.dupont@acme-industrie.fr;ACME Industrie;alice@")
    # one company for both spellings; Hélène's owner and her two addresses
    assert lines[2].startswith(
        "Hélène;Çelik;h.celik@gmail.com|helene@acme-industrie.fr;ACME Industrie;bob@example.com;"
    )
    stdout = cli("export", "companies", config=cfg).stdout
    assert stdout.splitlines() == ["name,domains,external_id", "ACME Industrie,,"]  # no BOM

    bad = tmp_path / "bad.csv"
    bad.write_text(
        "first_name,last_name,email\nA,A,a@x.fr\nB,B,b@x.fr\nC,C,c@x.fr\nD,D,not-an-address\n"
    )
    failed = cli("import", "contacts", str(bad), config=cfg, check=False)
    assert failed.returncode == 1
    assert "line 5: 'not-an-address' is not an e-mail address" in failed.stderr
    assert "nothing was imported" in failed.stderr
    assert len(cli_json("contacts", "list", config=cfg)) == 2

    cli("contacts", "add", "helene.celik@orange.fr", config=cfg)
    merged = cli_json(
        "contacts", "merge", "h.celik@gmail.com", "helene.celik@orange.fr", config=cfg
    )
    assert merged["addresses"] == 1
    [helene] = cli_json("contacts", "list", "--search", "çelik", config=cfg)
    assert helene["emails"] == [
        "h.celik@gmail.com",
        "helene@acme-industrie.fr",
        "helene.celik@orange.fr",
    ]


def test_help_explains_the_formats() -> None:
    text = " ".join(cli("import", "--help").stdout.split())
    assert "nothing is imported" in text and "line number" in text
    assert "first_name,last_name,email,company,owner" in text
    assert "--won / --lost" in cli("opportunities", "close", "--help").stdout
