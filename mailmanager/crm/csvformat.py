"""What spreadsheet CSV files look like: encodings, delimiters, headers, numbers and dates.

French Excel writes "CSV (séparateur: point-virgule)" as Windows-1252 with `;`, "CSV UTF-8"
with a byte-order mark, and "Texte Unicode" as UTF-16 with tabs; it understands a first
line `sep=;`. Headers are compared after removing case, accents and punctuation, so
`Prénom`, `prenom`, `first_name` and `First Name` all name the same field. A header may mean
different fields per kind: `nom` is a company's name, a contact's last name, an opportunity's
title. Numbers follow French ("12 500,50 €") or English ("12,500.50") notation.
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

KINDS = ("companies", "contacts", "opportunities")


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


EXPORT_COLUMNS: dict[str, tuple[str, ...]] = {
    "companies": _words("name domains external_id"),
    "contacts": _words(
        "first_name last_name email company owner status phone title source external_id"
    ),
    "opportunities": _words(
        "reference title company contacts owner stage pipeline_step amount currency expected_close"
    ),
}


def header_key(text: str) -> str:
    """Lower case, no accents, letters and digits only: "Date de clôture" → "datedecloture"."""
    decomposed = unicodedata.normalize("NFKD", text.strip().lower())
    return "".join(c for c in decomposed if c.isalnum() and not unicodedata.combining(c))


# Per kind: field → the header spellings it accepts, as a user writes them (compared after
# `header_key`). The importer maps headers with this table and `import --help` lists it.
_COMPANY = "Société, Entreprise, Company, Company name, Compte, Account, Organisation"
_COMPANY += ", Organization, Raison sociale, Client"
_OWNER = "Propriétaire, Responsable, Owner, Owner e-mail, Commercial, Suivi par, Assigned to"
_OWNER += ", Vendeur"
_EXTERNAL = "External id, ID externe, Id, Identifiant"
_EMAILS = "E-mail, Emails, Mail, Mails, Courriel, Courriels, Adresse e-mail, Adresse mail"
_EMAILS += ", Email address, Adresses e-mail, Adresses emails, Adresse mails"
_ALIASES: dict[str, dict[str, str]] = {
    "companies": {
        "name": "Name, Nom, Raison sociale, Société, Entreprise, Company, Company name, Compte"
        ", Account",
        "domains": "Domains, Domaines, Domain, Domaine, Site web, Site internet, Website, Site"
        ", Web, URL",
        "external_id": _EXTERNAL + ", Ref, Référence, Code",
    },
    "contacts": {
        "first_name": "First name, Prénom, Given name, First",
        "last_name": "Last name, Nom, Nom de famille, Surname, Family name, Last",
        "full_name": "Full name, Nom complet, Name, Contact, Nom prénom, Prénom nom",
        "email": _EMAILS,
        "company": _COMPANY,
        "owner": _OWNER,
        "phone": "Phone, Téléphone, Tél, Phone number, Mobile, Portable, Numéro de téléphone",
        "title": "Title, Job title, Fonction, Poste, Titre",
        "status": "Status, Statut, Type, Type de contact",
        "source": "Source, Origine",
        "external_id": _EXTERNAL,
    },
    "opportunities": {
        "reference": "Reference, Référence, Ref, Code, Numéro, Réf opportunité",
        "title": "Title, Titre, Intitulé, Nom, Name, Libellé, Objet, Opportunité, Opportunity"
        ", Affaire",
        "company": _COMPANY,
        "contacts": "Contacts, Contact, " + _EMAILS,
        "owner": _OWNER,
        "stage": "Stage, Étape, Statut, Status, Phase, État",
        "pipeline_step": "Pipeline step, Étape pipeline, Étape commerciale",
        "amount": "Amount, Montant, Montant HT, Valeur, Value, Budget, CA",
        "currency": "Currency, Devise, Monnaie",
        "expected_close": "Expected close, Date de clôture prévue, Clôture prévue, Échéance"
        ", Date prévue",
        # A close date: the real one of a won or lost opportunity, the expected one of an
        # open one (CRM exports write "Date de clôture" for both).
        "close_date": "Date de clôture, Date clôture, Clôture, Close date, Closing date",
        "closed_at": "Closed at, Closed, Closed on, Date de fermeture, Fermée le, Clôturée le"
        ", Date de clôture effective",
        "created_at": "Created at, Created, Created on, Creation date, Date de création"
        ", Date création, Créée le, Création, Date d'ouverture, Opened, Opened at",
    },
}
HEADERS: dict[str, dict[str, str]] = {
    kind: {
        header_key(alias): name for name, aliases in fields.items() for alias in aliases.split(",")
    }
    for kind, fields in _ALIASES.items()
}


def accepted_headers(kind: str) -> list[tuple[str, tuple[str, ...]]]:
    """(field, the headers that name it) for each field of `kind`, as `import --help` and
    the README list them."""
    return [
        (name, tuple(a.strip() for a in aliases.split(",")))
        for name, aliases in _ALIASES[kind].items()
    ]


_REQUIRED = {"companies": ("name",), "contacts": ("email",), "opportunities": ("title",)}

_STAGES = {
    "open": "open ouvert ouverte encours inprogress active actif",
    "won": "won win gagne gagnee signe signee closedwon",
    "lost": "lost perdu perdue closedlost abandonne abandonnee annule annulee",
}
_STAGE_WORDS = {w: stage for stage, words in _STAGES.items() for w in words.split()}
_STATUSES = {"prospect": "prospect", "prospects": "prospect", "lead": "prospect"}
_STATUSES |= {"client": "client", "clients": "client", "cliente": "client", "customer": "client"}
_FORMULA_RE = re.compile(r"[=@\t\r]|[+-].*[^0-9 .()/+-]", re.S)
_SPLIT_RE = re.compile(r"[|;,\n]")


def map_header(kind: str, header: list[str]) -> tuple[dict[str, str], list[str]]:
    """({header as written: field}, [ignored headers]); the first column naming a field wins."""
    columns: dict[str, str] = {}
    ignored: list[str] = []
    for raw in header:
        name = HEADERS[kind].get(header_key(raw))
        if name is None or name in columns.values():
            if raw.strip():
                ignored.append(raw.strip())
            continue
        columns[raw.strip()] = name
    return columns, ignored


def missing_required(kind: str, fields: set[str]) -> str | None:
    """The name of a required field no column provides, or None."""
    if kind == "opportunities" and "reference" in fields:
        return None
    if kind == "contacts" and "email" not in fields:
        return "email (e-mail, courriel)"
    return next((f for f in _REQUIRED[kind] if f not in fields), None)


def decode(data: bytes) -> tuple[str, str]:
    """`data` as text, and the encoding used: a BOM's, else UTF-8 if valid, else Windows-1252."""
    for bom, name in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16")):
        if data.startswith(bom):
            return data.decode(name), name
    if data.startswith(codecs.BOM_UTF16_BE):
        return data.decode("utf-16"), "utf-16"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    # cp1252 leaves five bytes undefined; latin-1 maps every byte, so nothing is refused.
    try:
        return data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"


def _count_outside_quotes(line: str, ch: str) -> int:
    count, quoted = 0, False
    for c in line:
        if c == '"':
            quoted = not quoted
        elif c == ch and not quoted:
            count += 1
    return count


def sniff(text: str) -> tuple[str, int]:
    """(delimiter, lines to skip: 1 when the file starts with Excel's `sep=;` line)."""
    first = text.partition("\n")[0]
    hint = re.fullmatch(r'"?sep=(.)"?', first.strip("\r"), re.I)
    if hint:
        return hint.group(1), 1
    counts = {d: _count_outside_quotes(first, d) for d in (";", ",", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return (best if counts[best] else ","), 0


def split_values(text: str) -> list[str]:
    """Several addresses or domains in one cell, separated by `|`, `;`, `,` or line breaks."""
    return [v.strip() for v in _SPLIT_RE.split(text) if v.strip()]


def escape_cell(value: str) -> str:
    """Prefix "'" to a cell a spreadsheet would run as a formula (OWASP CSV injection)."""
    return "'" + value if value and _FORMULA_RE.match(value) else value


def unescape_cell(value: str) -> str:
    return value[1:] if value.startswith("'") and _FORMULA_RE.match(value[1:]) else value


def parse_amount(text: str) -> tuple[Decimal, str | None]:
    """ "12 500,50 €" → (Decimal("12500.50"), "EUR"). Raises ValueError.

    With both "," and "." the last one is the decimal mark; a lone "," is the French decimal
    comma; a mark that occurs several times separates thousands.
    """
    symbols = (("€", "EUR"), ("$", "USD"), ("£", "GBP"))
    currency = next((code for s, code in symbols if s in text), None)
    cleaned = re.sub(r"[\s\u00a0\u202f'€$£]|eur|usd|gbp", "", text, flags=re.I)
    if currency in ("USD", "GBP") and "." not in cleaned:
        cleaned = cleaned.replace(",", "")  # $1,200: English notation
    if "," in cleaned and "." in cleaned:
        cleaned = cleaned.replace("," if cleaned.rfind(".") > cleaned.rfind(",") else ".", "")
    for mark in (",", "."):
        if cleaned.count(mark) > 1:
            cleaned = cleaned.replace(mark, "")
    try:
        value = Decimal(cleaned.replace(",", "."))
    except InvalidOperation:
        raise ValueError(f"amount {text!r} is not a number") from None
    if not value.is_finite() or value < 0:
        raise ValueError(f"amount {text!r} is not a positive number")
    return value, currency


def parse_date(text: str) -> datetime:
    """ISO (2026-03-31) or day-first (31/03/2026, 31.03.26) date, 00:00 UTC. Raises ValueError."""
    day = text.strip().split(" ")[0].split("T")[0]
    for fmt in ("%Y-%m-%d", "%d/%m/%Y", "%d/%m/%y", "%d.%m.%Y", "%d.%m.%y", "%d-%m-%Y"):
        try:
            return datetime.strptime(day, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise ValueError(f"date {text.strip()!r}: write 2026-03-31 or 31/03/2026")


def parse_stage(text: str) -> tuple[str, str]:
    """(stage, pipeline step): "Gagnée" → ("won", ""); "Négociation" → ("open", "Négociation")."""
    stage = _STAGE_WORDS.get(header_key(text))
    return (stage, "") if stage else ("open", text.strip())


def parse_status(text: str) -> str:
    """ "Cliente" → "client". Raises ValueError for anything but prospect or client."""
    status = _STATUSES.get(header_key(text))
    if status is None:
        raise ValueError(f"status {text.strip()!r}: use prospect or client")
    return status
