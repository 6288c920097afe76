#!/usr/bin/env python3
"""Write the demo Maildir `examples/sample-mailbox/` (mailbox of alice@example.com).

Deterministic and stdlib only: every date, Message-ID and MIME boundary is fixed, so running
it twice gives byte-identical files. Run it after changing the content below and commit the
script together with its output:

    python examples/make_sample_mailbox.py            # (re)write the sample, print a summary
    python examples/make_sample_mailbox.py --check    # exit 1 if the committed files differ

Layout: `INBOX/{cur,new,tmp}` and `Sent/{cur,new,tmp}`; empty folders hold a `.keep` file
(a Maildir reader must skip dotfiles). Files in `cur/` carry the Maildir info suffix
`:2,<flags>`; files in `new/` have none (https://cr.yp.to/proto/maildir.html). Messages are
serialised with `email.policy.SMTP`, so every line ends in CRLF. Every company, person,
address and phone number is invented (phone numbers come from the ranges reserved for
fiction in France, the UK and the US).
"""

from __future__ import annotations

import argparse
import email
import email.policy
import email.utils
import filecmp
import hashlib
import html
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from email.headerregistry import Address
from email.message import EmailMessage, Message
from pathlib import Path

POLICY = email.policy.SMTP
OUT_DIR = Path(__file__).resolve().parent / "sample-mailbox"
FOLDERS = ("INBOX", "Sent")
SUBDIRS = ("cur", "new", "tmp")
NO_MESSAGE_ID = "morel-1"  # the one message deliberately written without a Message-ID

# --------------------------------------------------------------------------- time zones
# Europe (EU and UK) leaves summer time on the last Sunday of October at 01:00 UTC
# (2026-10-25); the US on the first Sunday of November at 02:00 local (2026-11-01 06:00 UTC).
# Fixed offsets keep the script independent of the host's tz database.
ZONES: dict[str, tuple[int, int, datetime]] = {
    "paris": (2, 1, datetime(2026, 10, 25, 1, 0, tzinfo=UTC)),
    "london": (1, 0, datetime(2026, 10, 25, 1, 0, tzinfo=UTC)),
    "boston": (-4, -5, datetime(2026, 11, 1, 6, 0, tzinfo=UTC)),
}


def to_zone(moment: datetime, zone: str) -> datetime:
    summer, winter, switch = ZONES[zone]
    hours = summer if moment.astimezone(UTC) < switch else winter
    return moment.astimezone(timezone(timedelta(hours=hours)))


def local(zone: str, month: int, day: int, hour: int, minute: int, second: int = 0) -> datetime:
    summer, winter, switch = ZONES[zone]
    naive = datetime(2026, month, day, hour, minute, second)
    moment = naive.replace(tzinfo=timezone(timedelta(hours=summer)))
    if moment >= switch:
        moment = naive.replace(tzinfo=timezone(timedelta(hours=winter)))
    return moment


FR_DAYS = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")
FR_DAYS_ABBR = ("lun.", "mar.", "mer.", "jeu.", "ven.", "sam.", "dim.")
FR_MONTHS = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août",
             "septembre", "octobre", "novembre", "décembre")  # fmt: skip
FR_MONTHS_ABBR = ("janv.", "févr.", "mars", "avr.", "mai", "juin", "juil.", "août", "sept.",
                  "oct.", "nov.", "déc.")  # fmt: skip
EN_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
EN_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
             "September", "October", "November", "December")  # fmt: skip


def digest(*parts: str, n: int = 12) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:n]


# --------------------------------------------------------------------------- people
@dataclass(frozen=True)
class Person:
    name: str
    email: str
    zone: str = "paris"
    client: str = "outlook-fr"  # how this person's mail client quotes and names messages
    ip: str = "192.0.2.10"  # documentation address (RFC 5737) of their outgoing server

    @property
    def domain(self) -> str:
        return self.email.rpartition("@")[2]

    def address(self) -> Address:
        return Address(display_name=self.name, addr_spec=self.email)

    def display(self) -> str:
        return f"{self.name} <{self.email}>"


ALICE = Person("Alice Martin", "alice@example.com")
BOB = Person("Bob Smith", "bob@example.com", "london", "outlook-en")
HELENE = Person("Hélène Dubois", "h.dubois@acme-industrie.fr", ip="192.0.2.17")
FRANCOIS = Person("François Lefèvre", "f.lefevre@acme-industrie.fr", ip="192.0.2.17")
DURAND = Person("Jean-Pierre Durand", "jp.durand@boulangeries-durand.fr", client="iphone-fr",
                ip="198.51.100.23")  # fmt: skip
DURAND_TYPO = Person("Jean-Pierre Durand", "jp.durant@boulangeries-durand.fr")
BONNET = Person("Marc Bonnet", "marc.bonnet.biscuits@gmail.com", client="gmail-fr",
                ip="203.0.113.41")  # fmt: skip
MOREL = Person("Sophie Morel", "s.morel@transports-morel.fr", client="legacy", ip="198.51.100.62")
GIRARD = Person("Paul Girard", "paul.girard@laiterie-des-alpes.fr", ip="198.51.100.88")
JAMES = Person("James Whitfield", "james.whitfield@globex.co.uk", "london", "outlook-en",
               "203.0.113.7")  # fmt: skip
PRIYA = Person("Priya Shah", "priya.shah@globex.co.uk", "london", "outlook-en", "203.0.113.7")
SARAH = Person("Sarah O'Connor", "sarah.oconnor@northwind.example", "boston", "outlook-us",
               "203.0.113.90")  # fmt: skip
HEBDO = Person("L'Hebdo de l'Industrie", "newsletter@hebdo-industrie.fr", client="bulk",
               ip="198.51.100.140")  # fmt: skip
MAILER_DAEMON = Person("Mail Delivery System", "MAILER-DAEMON@smtp.example.com", ip="10.0.0.25")

SIG_ALICE_FR = """Cordialement,

Alice Martin
Ingénieure commerciale – Auvergne-Rhône-Alpes
Example SAS · 12 rue des Exemples, 69003 Lyon
Tél. 01 99 00 31 12 · Mob. 06 39 98 00 12"""
SIG_ALICE_EN = """Best regards,

Alice Martin
Sales Engineer – Example SAS, Lyon
+33 6 39 98 00 12"""
SIG_BOB = """Best,
Bob

Bob Smith
Account Manager UK & Ireland – Example SAS (London office)
+44 20 7946 0321"""
SIG_HELENE = """Bien cordialement,

Hélène Dubois
Directrice des achats
Acme Industrie – 45 avenue Jean-Jaurès, 69007 Lyon
Tél. 01 99 00 45 17"""
SIG_GIRARD = """Cordialement,

Paul Girard
Responsable maintenance – Laiterie des Alpes
Tél. 01 99 00 73 40"""
SIG_JAMES = """Regards,
James

James Whitfield
Head of Procurement | Globex Ltd
Tel: 0113 496 0472"""


# --------------------------------------------------------------------------- message specs
@dataclass(frozen=True)
class Mail:
    """One message of the sample. `kind` picks the builder; `flags` None means `new/`."""

    key: str
    when: datetime
    sender: Person
    to: tuple[Person, ...]
    subject: str
    body: str = ""
    cc: tuple[Person, ...] = ()
    parent: str | None = None  # key of the message this one answers
    thread_headers: bool = True  # False: a reply without In-Reply-To/References
    quote: bool = True  # append the parent, quoted the way the sender's client does it
    html: str = "none"  # "none", "alternative" (text + HTML) or "only" (HTML only)
    kind: str = "mail"  # "mail", "auto-reply", "bounce" or "bulk"; summary label
    flags: str | None = "S"
    attachment: tuple[str, str, bytes] | None = None  # (filename, mime type, data)
    extra: tuple[tuple[str, str], ...] = ()

    @property
    def folder(self) -> str:
        return "Sent" if self.sender == ALICE else "INBOX"


@dataclass
class Rendered:
    mail: Mail
    text: str  # the full plain text (body + quoted history), for later quotes
    message_id: str | None
    references: tuple[str, ...]
    raw: bytes = b""
    path: Path = field(default_factory=Path)


def tiny_pdf(title: str, lines: tuple[str, ...]) -> bytes:
    """A one-page PDF 1.4 with a correct cross-reference table (offsets computed here)."""
    text = [f"BT /F1 16 Tf 72 770 Td ({title}) Tj ET"]
    text += [f"BT /F1 11 Tf 72 {740 - 18 * i} Td ({line}) Tj ET" for i, line in enumerate(lines)]
    stream = "\n".join(text).encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Title (" + title.encode("latin-1") + b") /Producer (make_sample_mailbox.py) >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info 6 0 R >>\n" % (len(objects) + 1)
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


PROPOSAL_PDF = tiny_pdf(
    "Proposal GLX-2026-031 - Globex Ltd, Leeds",
    (
        "Retrofit of packaging line 2",
        "2 x MX-600 modular belt infeed conveyors",
        "1 x VisionQ inspection station with reject gate",
        "Installation, commissioning, operator training",
        "Total: GBP 184,500 excl. VAT - lead time 6 weeks",
        "Example SAS - invented company, sample document",
    ),
)


# --------------------------------------------------------------------------- the content
def build_mails() -> list[Mail]:
    """The 40 messages, thread by thread, in the order they are rendered."""
    p = local
    mails: list[Mail] = []
    add = mails.append

    # --- Acme Industrie (fr): devis → négociation → commande; our last message is answered
    # only by an out-of-office notice, so a follow-up reminder is still due. OPP-2041 tag.
    devis = "Demande de devis – équipement atelier de Lyon"
    tagged = devis + " [OPP-2041]"
    add(Mail("acme-1", p("paris", 10, 5, 9, 12), HELENE, (ALICE,), devis, html="alternative",
             flags="RS", body=f"""Bonjour Madame Martin,

Suite à notre rencontre au salon de Lyon, nous souhaiterions recevoir un devis pour \
l'équipement de notre nouvel atelier de Lyon-Gerland :

- 2 convoyeurs à bande modulaire (longueur 6 m) ;
- 1 poste de contrôle qualité avec caméra ;
- l'installation et la mise en service sur site.

La mise en production est prévue pour fin novembre. Pourriez-vous nous faire parvenir votre \
proposition d'ici la fin de la semaine prochaine ?

{SIG_HELENE}"""))  # fmt: skip
    add(Mail("acme-2", p("paris", 10, 6, 16, 40), ALICE, (HELENE,), "RE : " + tagged,
             parent="acme-1", body=f"""Bonjour Madame Dubois,

Merci pour votre demande. Voici notre proposition (devis n° D-2026-118, notre référence \
OPP-2041) :

- 2 convoyeurs à bande modulaire MX-600, 6 m : 2 × 14 200 € HT
- 1 poste de contrôle qualité VisionQ avec caméra : 9 850 € HT
- installation et mise en service (3 jours) : 3 600 € HT

Total : 41 850 € HT, délai de livraison de 5 semaines à réception de commande. Le devis est \
valable 30 jours ; je reste à votre disposition pour en discuter.

{SIG_ALICE_FR}"""))  # fmt: skip
    add(Mail("acme-3", p("paris", 10, 8, 11, 5), HELENE, (ALICE,), "RE : " + tagged,
             parent="acme-2", html="alternative", flags="RS", body=f"""Bonjour Madame Martin,

Merci pour votre proposition, très claire. Nous avons toutefois reçu une offre concurrente \
inférieure d'environ 10 %.

Seriez-vous en mesure de nous consentir une remise de 8 % sur le total ? Par ailleurs, la \
formation de nos deux opérateurs est-elle incluse ?

{SIG_HELENE}"""))  # fmt: skip
    add(Mail("acme-4", p("paris", 10, 9, 10, 20), ALICE, (HELENE,), "RE : " + tagged,
             parent="acme-3", body=f"""Bonjour Madame Dubois,

Après validation avec ma direction, nous pouvons vous proposer une remise de 5 % sur \
l'ensemble de l'offre, soit 39 757,50 € HT au lieu de 41 850 € HT, et nous incluons sans \
supplément la formation de vos deux opérateurs (une journée sur site).

Le délai de 5 semaines reste garanti si la commande nous parvient avant le 16 octobre.

{SIG_ALICE_FR}"""))  # fmt: skip
    add(Mail("acme-5", p("paris", 10, 13, 14, 2), HELENE, (ALICE,), "RE : " + tagged,
             cc=(FRANCOIS,), parent="acme-4", html="alternative", flags="RS",
             body=f"""Bonjour Madame Martin,

C'est d'accord pour nous : remise de 5 % et formation incluse. Notre service comptable \
(François Lefèvre, en copie) vous transmettra le bon de commande demain.

Merci pour votre réactivité.

{SIG_HELENE}"""))  # fmt: skip
    # An Outlook forward: no In-Reply-To/References, the forwarded mail pasted below.
    add(Mail("acme-6", p("paris", 10, 14, 9, 30), HELENE, (ALICE,),
             "TR : Bon de commande BC-2026-0457", html="alternative", body=f"""\
Bonjour Madame Martin,

Voici le bon de commande validé par notre comptabilité. La livraison est à prévoir sur notre \
site de Lyon-Gerland.

{SIG_HELENE}

________________________________
De : François Lefèvre <f.lefevre@acme-industrie.fr>
Envoyé : mercredi 14 octobre 2026 08:47
À : Hélène Dubois <h.dubois@acme-industrie.fr>
Objet : Bon de commande BC-2026-0457

Hélène,

Le bon de commande BC-2026-0457 (fournisseur : Example SAS, 39 757,50 € HT, paiement à \
45 jours fin de mois) est validé et signé.
Adresse de facturation : Acme Industrie, service comptabilité, 45 avenue Jean-Jaurès, \
69007 Lyon.

François"""))  # fmt: skip
    add(Mail("acme-7", p("paris", 10, 15, 8, 55), ALICE, (HELENE,), "RE : " + tagged,
             cc=(FRANCOIS,), parent="acme-5", body=f"""\
Bonjour Madame Dubois, bonjour Monsieur Lefèvre,

Nous avons bien reçu le bon de commande BC-2026-0457 ; merci pour votre confiance.

La livraison est planifiée la semaine du 16 novembre. Je reviendrai vers vous début novembre \
pour fixer le créneau exact avec votre équipe sur site.

{SIG_ALICE_FR}"""))  # fmt: skip
    add(Mail("acme-8", p("paris", 10, 15, 9, 5), ALICE, (BOB,), "TR : RE : " + tagged,
             parent="acme-7", thread_headers=False, body="""Hi Bob,

Good news: Acme Industrie signed (OPP-2041, EUR 39,757.50 excl. VAT). Could you check with \
the Leeds workshop that both MX-600 conveyors can ship by 13 November?

Thanks,
Alice"""))  # fmt: skip
    add(Mail("acme-9", p("london", 10, 15, 8, 31), BOB, (ALICE,), "RE: TR : RE : " + tagged,
             parent="acme-8", body=f"""Hi Alice,

Congratulations, well done! Leeds confirms both MX-600 units can ship on 11 November, so the \
week of 16 November works.

{SIG_BOB}"""))  # fmt: skip
    add(Mail("acme-10", p("paris", 11, 9, 10, 15), ALICE, (HELENE,), "RE : " + tagged,
             cc=(FRANCOIS,), parent="acme-7", body=f"""Bonjour Madame Dubois,

Comme convenu, je reviens vers vous pour la livraison : nos techniciens peuvent intervenir le \
mardi 17 novembre à partir de 8 h.

Pouvez-vous me confirmer l'adresse exacte de livraison (quai de déchargement) et le nom de \
la personne à contacter sur site ?

{SIG_ALICE_FR}"""))  # fmt: skip
    add(Mail("acme-11", p("paris", 11, 9, 10, 15, 41), HELENE, (ALICE,),
             "Réponse automatique : Absence du bureau du 9 au 20 novembre", parent="acme-10",
             quote=False, kind="auto-reply",
             extra=(("Auto-Submitted", "auto-replied"), ("X-Auto-Response-Suppress", "All")),
             body="""Bonjour,

Je suis absente du bureau du lundi 9 au vendredi 20 novembre 2026 inclus, avec un accès \
limité à ma messagerie. Je serai de retour le lundi 23 novembre 2026.

Pour toute urgence, merci de contacter François Lefèvre (f.lefevre@acme-industrie.fr, \
01 99 00 45 20).

Cordialement,
Hélène Dubois"""))  # fmt: skip

    # --- Boulangeries Durand (fr): quote sent to a mistyped address → DSN; resent, chased
    # ("relance"); the client's counter-question is still unanswered.
    fours = "Devis fours mixtes – Boulangeries Durand"
    fours_body = """\
Suite à votre visite de notre showroom jeudi dernier, voici notre devis pour l'équipement de \
votre nouveau fournil :

- 2 fours mixtes à sole et convection FM-10 : 2 × 18 900 € HT
- 1 chambre de pousse contrôlée CP-20 : 6 400 € HT
- livraison, installation et reprise de l'ancien four : 2 300 € HT

Total : 46 500 € HT. Un financement en crédit-bail sur 48 mois est possible."""
    add(
        Mail(
            "durand-1",
            p("paris", 10, 19, 15, 30),
            ALICE,
            (DURAND_TYPO,),
            fours,
            body=f"Bonjour Monsieur Durand,\n\n{fours_body}\n\n{SIG_ALICE_FR}",
        )
    )
    add(Mail("durand-2", p("paris", 10, 19, 15, 30, 9), MAILER_DAEMON, (ALICE,),
             "Undelivered Mail Returned to Sender", parent="durand-1", kind="bounce",
             extra=(("Auto-Submitted", "auto-replied"),)))  # fmt: skip
    add(Mail("durand-3", p("paris", 10, 19, 15, 48), ALICE, (DURAND,), fours, body=f"""\
Bonjour Monsieur Durand,

Mon précédent message n'a pas pu vous être remis (erreur dans l'adresse), je vous le renvoie.

{fours_body}

{SIG_ALICE_FR}"""))  # fmt: skip
    add(Mail("durand-4", p("paris", 10, 29, 9, 40), ALICE, (DURAND,), "RE : " + fours,
             parent="durand-3", body=f"""Bonjour Monsieur Durand,

Je me permets de revenir vers vous au sujet de notre devis du 19 octobre pour les fours \
mixtes. Avez-vous pu en prendre connaissance ?

Je serais ravie d'en discuter de vive voix ou de passer vous voir au fournil de Villeurbanne.

{SIG_ALICE_FR}"""))  # fmt: skip
    add(Mail("durand-5", p("paris", 11, 4, 21, 17), DURAND, (ALICE,), "Re: " + fours,
             parent="durand-4", body="""Bonjour Madame Martin,

Désolé pour le délai, période chargée. Le devis nous intéresse mais deux points :
- pouvez-vous faire un geste sur le prix si on prend aussi une deuxième chambre de pousse ?
- l'installation doit être terminée avant le 15 décembre (fêtes de fin d'année).

Merci de me dire rapidement.

Jean-Pierre Durand
Boulangeries Durand

Envoyé de mon iPhone"""))  # fmt: skip

    # --- Marc Bonnet, free-mail contact (fr): his second mail lacks In-Reply-To and
    # References (subject fallback); our last message is unanswered.
    tarifs = "Tarifs ensacheuse pour petite production"
    add(Mail("bonnet-1", p("paris", 10, 21, 7, 52), BONNET, (ALICE,), tarifs,
             html="alternative", flags="RS", body="""Bonjour,

Je suis artisan biscuitier à Annecy (Biscuiterie Bonnet, 4 salariés). Je cherche une \
ensacheuse pour des sachets de 100 à 500 g, environ 800 sachets par jour.
Pouvez-vous m'indiquer vos tarifs et vos délais ?

Merci d'avance,
Marc Bonnet
06 39 98 41 07"""))  # fmt: skip
    add(Mail("bonnet-2", p("paris", 10, 22, 11, 10), ALICE, (BONNET,), "RE : " + tarifs,
             parent="bonnet-1", body=f"""Bonjour Monsieur Bonnet,

Merci pour votre message. Pour votre volume, notre ensacheuse semi-automatique ES-200 est \
bien adaptée : 9 800 € HT, doseur pondéral inclus, livraison sous 3 semaines. Une version \
avec soudeuse à impulsion et imprimante de lots est proposée à 12 400 € HT.

Souhaitez-vous une démonstration avec vos propres produits ?

{SIG_ALICE_FR}"""))  # fmt: skip
    add(Mail("bonnet-3", p("paris", 10, 26, 18, 3), BONNET, (ALICE,), "Re: " + tarifs,
             parent="bonnet-2", thread_headers=False, flags="RS", body="""\
Bonjour Madame Martin,

Merci pour la réponse rapide. La version à 12 400 € m'intéresse, mais un paiement en trois \
fois est-il possible ?
Et oui pour une démonstration, plutôt un jeudi si possible.

Marc"""))  # fmt: skip
    add(Mail("bonnet-4", p("paris", 10, 27, 14, 25), ALICE, (BONNET,), "RE : " + tarifs,
             parent="bonnet-3", body=f"""Bonjour Monsieur Bonnet,

Oui, le paiement en trois fois sans frais est possible (à la commande, à la livraison, puis \
à 30 jours).

Je vous propose une démonstration dans notre showroom de Lyon le jeudi 12 novembre à 10 h ; \
apportez quelques kilos de biscuits et vos sachets, nous ferons les essais ensemble.

Pouvez-vous me confirmer ce créneau ?

{SIG_ALICE_FR}"""))  # fmt: skip

    # --- Transports Morel (fr): a new prospect whose old mailer sends no Message-ID; unread.
    add(Mail(NO_MESSAGE_ID, p("paris", 11, 12, 8, 47), MOREL, (ALICE,),
             "Demande de renseignements – quais de chargement", flags=None,
             extra=(("X-Mailer", "Messagerie Morel 2.1"),), body="""Bonjour,

Nous équipons notre nouvelle plateforme logistique de Saint-Priest (6 quais) et recherchons \
des convoyeurs télescopiques pour le chargement des semi-remorques.
Pourriez-vous nous envoyer une documentation et une estimation budgétaire ?

Cordialement,
Sophie Morel
Responsable d'exploitation – Transports Morel
Tél. 01 99 00 62 38"""))  # fmt: skip

    # --- Laiterie des Alpes (fr): maintenance renewal negotiation; the client's last
    # message (a request for the contract) is unread and unanswered.
    contrat = "Renouvellement du contrat de maintenance 2027"
    add(Mail("laiterie-1", p("paris", 11, 2, 10, 30), GIRARD, (ALICE,), contrat, flags="RS",
             body=f"""Bonjour Madame Martin,

Notre contrat de maintenance (lignes de conditionnement de Chambéry) arrive à échéance le \
31 décembre. Nous souhaitons le renouveler pour 2027 : pouvez-vous nous adresser votre \
proposition tarifaire ?

{SIG_GIRARD}"""))  # fmt: skip
    add(Mail("laiterie-2", p("paris", 11, 3, 15, 0), ALICE, (GIRARD,), "RE : " + contrat,
             parent="laiterie-1", body=f"""Bonjour Monsieur Girard,

Merci pour votre confiance renouvelée. Pour 2027, le contrat (2 visites préventives par an, \
intervention sous 24 h, pièces d'usure incluses) s'élève à 14 904 € HT par an, soit une \
révision de +3,5 % liée à l'indice du coût de la main-d'œuvre.

{SIG_ALICE_FR}"""))  # fmt: skip
    add(Mail("laiterie-3", p("paris", 11, 5, 9, 15), GIRARD, (ALICE,), "RE : " + contrat,
             parent="laiterie-2", flags="RS", body=f"""Bonjour Madame Martin,

Une hausse de 3,5 % nous paraît élevée au vu du nombre d'interventions cette année (une \
seule en dehors des visites préventives). Notre budget permet au maximum +1,5 %.

Pouvez-vous revoir votre proposition ?

{SIG_GIRARD}"""))  # fmt: skip
    add(Mail("laiterie-4", p("paris", 11, 6, 11, 45), ALICE, (GIRARD,), "RE : " + contrat,
             parent="laiterie-3", body=f"""Bonjour Monsieur Girard,

Je comprends. Je peux vous proposer +2 % (14 688 € HT par an) en contrepartie d'un \
engagement de trois ans, avec un tarif bloqué pour 2027–2029.

{SIG_ALICE_FR}"""))  # fmt: skip
    add(Mail("laiterie-5", p("paris", 11, 10, 16, 20), GIRARD, (ALICE,), "RE : " + contrat,
             parent="laiterie-4", flags=None, body=f"""Bonjour Madame Martin,

L'engagement sur trois ans à +2 % nous convient. Pouvez-vous nous envoyer le contrat mis à \
jour pour signature avant le 20 novembre ? Notre direction le validera lors du comité du 24.

{SIG_GIRARD}"""))  # fmt: skip

    # --- Globex (en): proposal with a PDF, an English out-of-office, Bob in copy; the
    # client's last message is unanswered.
    proposal = "Proposal – packaging line retrofit, Leeds site"
    add(Mail("globex-1", p("paris", 10, 7, 14, 0), ALICE, (JAMES,), proposal, cc=(PRIYA, BOB),
             attachment=("Example-SAS_Proposal_GLX-2026-031.pdf", "application/pdf",
                         PROPOSAL_PDF), body=f"""Dear James,

Thank you again for showing us your Leeds site last week. Please find attached our proposal \
GLX-2026-031 for the retrofit of packaging line 2:

- replacement of the two infeed conveyors (MX-600 modular belt);
- a VisionQ inspection station with reject gate;
- installation over a weekend shutdown, commissioning and operator training.

Total: £184,500 excl. VAT, lead time 6 weeks from order. Bob Smith, our account manager for \
the UK, is copied and will be your local contact.

{SIG_ALICE_EN}"""))  # fmt: skip
    add(Mail("globex-2", p("london", 10, 7, 13, 0, 21), PRIYA, (ALICE,),
             "Automatic reply: " + proposal, parent="globex-1", quote=False,
             kind="auto-reply",
             extra=(("Auto-Submitted", "auto-replied"), ("X-Auto-Response-Suppress", "All")),
             body="""Thank you for your email. I am out of the office until Friday \
16 October 2026 with no access to email, and will be back on Monday 19 October 2026.

For anything urgent, please contact James Whitfield (james.whitfield@globex.co.uk).

Kind regards,
Priya Shah
Operations Manager, Globex Ltd"""))  # fmt: skip
    add(Mail("globex-3", p("london", 10, 12, 10, 41), JAMES, (ALICE,), "RE: " + proposal,
             cc=(PRIYA, BOB), parent="globex-1", html="alternative", flags="RS",
             body=f"""Hi Alice,

Thanks for the proposal, it is well put together. A few questions before I take it to our \
capex committee:

1. Can the installation be done over our Christmas shutdown (24 December – 3 January)?
2. What warranty applies to the VisionQ camera?
3. Would you accept staged payments (30/40/30)?

{SIG_JAMES}"""))  # fmt: skip
    add(Mail("globex-4", p("paris", 10, 13, 9, 30), ALICE, (JAMES,), "RE : " + proposal,
             cc=(PRIYA, BOB), parent="globex-3", body=f"""Hi James,

Thank you for your questions:

1. Yes, the Christmas shutdown works if we receive the order by 13 November.
2. The VisionQ station carries a 24-month parts and labour warranty; the camera itself is \
covered for 36 months.
3. Staged payments are possible; we would suggest 30 % on order, 50 % on delivery and 20 % \
on acceptance.

Bob would be happy to come to Leeds to go through the details with your team.

{SIG_ALICE_EN}"""))  # fmt: skip
    add(Mail("globex-5", p("london", 10, 20, 16, 5), BOB, (JAMES,), "RE: " + proposal,
             cc=(ALICE, PRIYA), parent="globex-4", body=f"""Hi James,

Following Alice's note, I'll be in Leeds on Tuesday 3 November and could stop by in the \
afternoon to walk the line with your engineers. Would 2 pm suit you?

{SIG_BOB}"""))  # fmt: skip
    add(Mail("globex-6", p("london", 10, 28, 11, 22), JAMES, (ALICE, BOB), "RE: " + proposal,
             cc=(PRIYA,), parent="globex-5", html="alternative", body=f"""Hi Alice, hi Bob,

Apologies for the slow reply. Tuesday 3 November at 2 pm is fine for the site walk.

Our capex committee meets on 17 November: could you send a revised proposal with 30/40/30 \
payment terms and the Christmas installation dates before then?

{SIG_JAMES}"""))  # fmt: skip

    # --- Northwind (en): US prospect writes to Bob in HTML only; Alice takes over in English;
    # our last message is unanswered.
    pilot = "Northwind pilot – Lyon distribution centre"
    add(Mail("northwind-1", p("boston", 10, 26, 9, 14), SARAH, (BOB,), pilot, cc=(ALICE,),
             html="only", body="""Hi Bob,

As discussed at the Chicago show, we are opening a distribution centre near Lyon in Q1 2027 \
and would like to pilot your sortation conveyors there before a wider European rollout.

Could you put me in touch with your team in France? Ideally we would visit a reference site \
in the second half of November.

Thanks,
Sarah O'Connor
Director of Operations, Northwind Logistics
+1 617 555 0142"""))  # fmt: skip
    add(Mail("northwind-2", p("london", 10, 26, 16, 2), BOB, (SARAH,), "RE: " + pilot,
             cc=(ALICE,), parent="northwind-1", flags="RS", body=f"""Hi Sarah,

Great to hear from you. I'm copying my colleague Alice Martin, who looks after our customers \
in the Lyon area and can arrange a reference visit.

{SIG_BOB}"""))  # fmt: skip
    add(Mail("northwind-3", p("paris", 10, 27, 10, 30), ALICE, (SARAH,), "RE : " + pilot,
             cc=(BOB,), parent="northwind-2", body=f"""Hi Sarah,

Nice to meet you. I'd be glad to organise a visit of a sortation line we installed for a \
parcel carrier in Saint-Priest, 20 minutes from Lyon airport.

Would Tuesday 17 or Wednesday 18 November suit you?

{SIG_ALICE_EN}"""))  # fmt: skip
    add(Mail("northwind-4", p("boston", 11, 2, 8, 50), SARAH, (ALICE,), "RE: " + pilot,
             cc=(BOB,), parent="northwind-3", html="alternative", flags="RS",
             body="""Hi Alice,

Wednesday 18 November works for us; we will be three people. Could you send an agenda and \
the address of the site?

Thanks,
Sarah"""))  # fmt: skip
    add(Mail("northwind-5", p("paris", 11, 3, 9, 10), ALICE, (SARAH,), "RE : " + pilot,
             cc=(BOB,), parent="northwind-4", body=f"""Hi Sarah,

Perfect. Here is the proposed agenda for Wednesday 18 November:

- 9:30 welcome at our Lyon office (12 rue des Exemples, 69003 Lyon);
- 10:30 visit of the Saint-Priest site with the customer's maintenance lead;
- 12:30 lunch and discussion of your pilot scope.

Could you send me the names of the participants for site access?

{SIG_ALICE_EN}"""))  # fmt: skip

    # --- internal only (Alice ↔ Bob)
    review = "Q4 pipeline review"
    add(Mail("internal-1", p("paris", 11, 6, 17, 30), ALICE, (BOB,), review, body="""Hi Bob,

Ahead of Monday's pipeline review, here is where I stand:

- Acme Industrie (OPP-2041): won, delivery in the week of 16 November;
- Boulangeries Durand: they want a better price with a second proving chamber, I reply Monday;
- Laiterie des Alpes: maintenance renewal, +2 % over three years proposed;
- Globex: revised proposal due before their 17 November committee. Can you take the \
payment terms?

Have a good weekend,
Alice"""))  # fmt: skip
    add(Mail("internal-2", p("london", 11, 6, 17, 2), BOB, (ALICE,), "RE: " + review,
             parent="internal-1", body=f"""Thanks Alice, all clear. I'll draft the Globex \
payment terms (30/40/30) on Monday and send them to you for review.

{SIG_BOB}"""))  # fmt: skip

    # --- a newsletter (bulk); delivered, listed as seen-but-unflagged in cur/.
    add(Mail("hebdo-312", p("paris", 11, 5, 6, 0), HEBDO, (ALICE,),
             "L'Hebdo de l'Industrie n° 312 : cobots, énergie et salons de l'hiver",
             html="alternative", kind="bulk", flags="", extra=(
                 ("List-Id", "L'Hebdo de l'Industrie <hebdo.hebdo-industrie.fr>"),
                 ("List-Unsubscribe", "<mailto:desinscription@hebdo-industrie.fr?subject="
                  "unsubscribe>, <https://hebdo-industrie.fr/desinscription?u=7f3a9c21>"),
                 ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
                 ("Precedence", "bulk"),
             ), body="""L'Hebdo de l'Industrie – n° 312 – jeudi 5 novembre 2026

À LA UNE
Cobots : les PME passent à l'échelle. Trois ateliers témoignent de leur retour sur \
investissement.

ÉNERGIE
Prix de l'électricité : ce qui change pour les sites industriels au 1er janvier.

AGENDA
Les salons de l'hiver : Lyon, Lille et Nantes, nos conseils pour préparer vos visites.

Vous recevez cette lettre car vous êtes abonné(e) à L'Hebdo de l'Industrie.
Se désinscrire : https://hebdo-industrie.fr/desinscription?u=7f3a9c21"""))  # fmt: skip
    return mails


# --------------------------------------------------------------------------- rendering
def fr_long(moment: datetime) -> str:
    return (f"{FR_DAYS[moment.weekday()]} {moment.day} {FR_MONTHS[moment.month - 1]} "
            f"{moment.year} {moment:%H:%M}")  # fmt: skip


def quoted_history(mail: Mail, parent: Rendered) -> str:
    """The parent appended the way the sender's mail client does it."""
    prev = parent.mail
    when = to_zone(prev.when, mail.sender.zone)
    client = mail.sender.client
    if client.startswith("outlook"):
        if client == "outlook-fr":
            labels = ("De", "Envoyé", "À", "Cc", "Objet")
            sent, sep = fr_long(when), " : "
        elif client == "outlook-en":
            labels = ("From", "Sent", "To", "Cc", "Subject")
            sent, sep = f"{when.day} {EN_MONTHS[when.month - 1]} {when:%Y %H:%M}", ": "
        else:
            labels = ("From", "Sent", "To", "Cc", "Subject")
            hour = when.hour % 12 or 12
            sent = (f"{EN_DAYS[when.weekday()]}, {EN_MONTHS[when.month - 1]} {when.day}, "
                    f"{when.year} {hour}:{when:%M} {'AM' if when.hour < 12 else 'PM'}")  # fmt: skip
            sep = ": "
        block = ["_" * 32, f"{labels[0]}{sep}{prev.sender.display()}", f"{labels[1]}{sep}{sent}",
                 f"{labels[2]}{sep}{'; '.join(p.display() for p in prev.to)}"]  # fmt: skip
        if prev.cc:
            block.append(f"{labels[3]}{sep}{'; '.join(p.display() for p in prev.cc)}")
        block.append(f"{labels[4]}{sep}{prev.subject}")
        return "\n".join(block) + "\n\n" + parent.text
    quoted = "\n".join(f"> {line}" if line else ">" for line in parent.text.split("\n"))
    short = (f"{FR_DAYS_ABBR[when.weekday()]} {when.day} {FR_MONTHS_ABBR[when.month - 1]} "
             f"{when.year} à {when:%H:%M}")  # fmt: skip
    if client == "gmail-fr":
        return f"Le {short}, {prev.sender.display()} a écrit :\n\n{quoted}"
    # iPhone Mail puts the attribution inside the quote.
    short = short.split(" ", 1)[1]
    return f"> Le {short}, {prev.sender.display()} a écrit :\n>\n{quoted}"


def to_html(text: str, sender: Person) -> str:
    font = "Calibri, Arial, sans-serif" if sender.client.startswith("outlook") else "Arial"
    paragraphs = "\n".join(
        "<p>" + "<br>\n".join(html.escape(line) for line in block.split("\n")) + "</p>"
        for block in text.split("\n\n")
    )
    return (
        '<html>\n<head>\n<meta http-equiv="Content-Type" content="text/html; charset=utf-8">\n'
        f'</head>\n<body>\n<div style="font-family: {font}; font-size: 11pt">\n'
        f"{paragraphs}\n</div>\n</body>\n</html>\n"
    )


def transfer_encoding(text: str) -> str:
    if text.isascii() and max(len(line) for line in text.split("\n")) <= 76:
        return "7bit"
    return "quoted-printable"


def message_id(mail: Mail) -> str:
    if mail.sender.client == "gmail-fr":
        return f"<CAJx{digest(mail.key, n=28)}+w@mail.gmail.com>"
    if mail.sender.client == "iphone-fr":
        h = digest(mail.key, n=32).upper()
        return f"<{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}@{mail.sender.domain}>"
    return f"<{mail.when:%Y%m%d%H%M%S}.{digest(mail.key).upper()}@{mail.sender.domain}>"


def add_trace(msg: EmailMessage, mail: Mail) -> None:
    """Headers the receiving MTA and the delivery agent add (inbound copies only)."""
    sender = mail.sender
    if mail.kind in ("auto-reply", "bounce"):
        msg["Return-Path"] = "<>"  # RFC 3834 §3.3 and RFC 5321 §4.5.5: null sender
    else:
        msg["Return-Path"] = f"<{sender.email}>"
    msg["Delivered-To"] = ALICE.email
    if sender.domain == "gmail.com":
        host = "mail-wm1-f41.google.com"
    elif sender.domain.endswith("example.com"):
        host = "smtp.example.com"
    else:
        host = f"mail.{sender.domain}"
    received = to_zone(mail.when + timedelta(seconds=3), "paris")
    msg["Received"] = (
        f"from {host} ({host} [{sender.ip}]) by mx.example.com (Postfix) with ESMTPS id "
        f"4K{digest(mail.key, 'qid', n=9).upper()} for <{ALICE.email}>; "
        f"{email.utils.format_datetime(received)}"
    )


def add_envelope(msg: EmailMessage, mail: Mail, msgid: str | None, refs: tuple[str, ...]) -> None:
    if mail.folder == "INBOX":
        add_trace(msg, mail)
    msg["From"] = mail.sender.address()
    msg["To"] = [p.address() for p in mail.to]
    if mail.cc:
        msg["Cc"] = [p.address() for p in mail.cc]
    msg["Subject"] = mail.subject
    msg["Date"] = email.utils.format_datetime(mail.when)
    if msgid is not None:
        msg["Message-ID"] = msgid
    if refs:
        msg["In-Reply-To"] = refs[-1]
        msg["References"] = " ".join(refs)
    for name, value in mail.extra:
        msg[name] = value
    client = mail.sender.client
    if client.startswith("outlook") and mail.kind == "mail":
        msg["Content-Language"] = "fr-FR" if client == "outlook-fr" else "en-GB"
        if client == "outlook-us":
            msg.replace_header("Content-Language", "en-US")
            msg["X-Mailer"] = "Microsoft Outlook for Mac 16.89"
        else:
            msg["X-Mailer"] = "Microsoft Outlook 16.0"
    elif client == "iphone-fr":
        msg["X-Mailer"] = "iPhone Mail (22A3354)"


BULK_HTML = """<!DOCTYPE html>
<html lang="fr">
<head><meta charset="utf-8"><title>L'Hebdo de l'Industrie n° 312</title></head>
<body style="margin:0;background:#f2f2f2">
<table role="presentation" width="600" align="center" style="background:#ffffff;font-family:Arial">
<tr><td style="background:#1d3557;color:#ffffff;padding:16px;font-size:20px">
L'Hebdo de l'Industrie – n° 312</td></tr>
<tr><td style="padding:16px">
<h2>Cobots : les PME passent à l'échelle</h2>
<p>Trois ateliers témoignent de leur retour sur investissement.
<a href="https://hebdo-industrie.fr/r/312/cobots?u=7f3a9c21">Lire l'article</a></p>
<h2>Prix de l'électricité : ce qui change au 1er janvier</h2>
<p><a href="https://hebdo-industrie.fr/r/312/energie?u=7f3a9c21">Lire l'article</a></p>
<h2>Les salons de l'hiver</h2>
<p>Lyon, Lille et Nantes : nos conseils pour préparer vos visites.</p>
</td></tr>
<tr><td style="padding:16px;font-size:11px;color:#777777">
Vous recevez cette lettre car vous êtes abonné(e) à L'Hebdo de l'Industrie.
<a href="https://hebdo-industrie.fr/desinscription?u=7f3a9c21">Se désinscrire</a>
<img src="https://hebdo-industrie.fr/o/312/7f3a9c21.gif" width="1" height="1" alt="">
</td></tr>
</table>
</body>
</html>
"""


def build_message(mail: Mail, msgid: str | None, refs: tuple[str, ...], text: str) -> EmailMessage:
    msg = EmailMessage(policy=POLICY)
    add_envelope(msg, mail, msgid, refs)
    if mail.html == "only":
        page = to_html(text, mail.sender)
        msg.set_content(page, subtype="html", cte=transfer_encoding(page))
    else:
        msg.set_content(text, cte=transfer_encoding(text))
    if mail.html == "alternative":
        page = BULK_HTML if mail.kind == "bulk" else to_html(text, mail.sender)
        msg.add_alternative(page, subtype="html", cte=transfer_encoding(page))
    if mail.attachment is not None:
        filename, mime, data = mail.attachment
        maintype, subtype = mime.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return msg


def build_bounce(mail: Mail, msgid: str, original: Rendered) -> EmailMessage:
    """A Postfix-style DSN (RFC 3464) inside multipart/report (RFC 6522)."""
    failed = original.mail.to[0].email
    remote = "mx1." + failed.rpartition("@")[2]
    msg = EmailMessage(policy=POLICY)
    add_envelope(msg, mail, msgid, ())
    msg["MIME-Version"] = "1.0"
    msg["Content-Type"] = "multipart/report; report-type=delivery-status"
    notice = EmailMessage(policy=POLICY)
    notice.set_content(
        f"""This is the mail system at host smtp.example.com.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

For further assistance, please send mail to postmaster.

If you do so, please include this problem report. You can
delete your own text from the attached returned message.

                   The mail system

<{failed}>: host
    {remote}[198.51.100.24] said: 550 5.1.1
    <{failed}>: Recipient address rejected: User
    unknown in virtual mailbox table (in reply to RCPT TO command)
""",
        charset="us-ascii",
    )
    notice["Content-Description"] = "Notification"
    per_message = EmailMessage(policy=POLICY)
    per_message["Reporting-MTA"] = "dns; smtp.example.com"
    per_message["X-Postfix-Queue-ID"] = "4K" + digest(original.mail.key, "qid", n=9).upper()
    per_message["X-Postfix-Sender"] = f"rfc822; {ALICE.email}"
    per_message["Arrival-Date"] = email.utils.format_datetime(original.mail.when)
    per_recipient = EmailMessage(policy=POLICY)
    per_recipient["Final-Recipient"] = f"rfc822; {failed}"
    per_recipient["Original-Recipient"] = f"rfc822;{failed}"
    per_recipient["Action"] = "failed"
    per_recipient["Status"] = "5.1.1"
    per_recipient["Remote-MTA"] = f"dns; {remote}"
    per_recipient["Diagnostic-Code"] = (
        f"smtp; 550 5.1.1 <{failed}>: Recipient address rejected: User unknown in virtual "
        "mailbox table"
    )
    status = EmailMessage(policy=POLICY)
    status["Content-Description"] = "Delivery report"
    status["Content-Type"] = "message/delivery-status"
    status.set_payload([per_message, per_recipient])
    headers = EmailMessage(policy=POLICY)
    header_block = original.raw.split(b"\r\n\r\n", 1)[0].decode("ascii")
    headers.set_content(
        header_block.replace("\r\n", "\n") + "\n", subtype="rfc822-headers", charset="us-ascii"
    )
    headers["Content-Description"] = "Undelivered Message Headers"
    for part in (notice, status, headers):
        msg.attach(part)
    return msg


def tidy_parts(msg: EmailMessage, key: str) -> None:
    """Fix the MIME boundaries (the email package draws random ones) and drop the
    MIME-Version header that `add_alternative`/`add_attachment` copy into every sub-part
    (RFC 2045 §4 wants it only at the top)."""
    for index, part in enumerate(msg.walk()):
        if index and "MIME-Version" in part:
            del part["MIME-Version"]
        if part.get_content_maintype() == "multipart":
            part.set_boundary(f"=_mm_{digest(key, str(index), n=24)}")


def render_all(mails: list[Mail]) -> list[Rendered]:
    done: dict[str, Rendered] = {}
    for mail in mails:
        parent = done[mail.parent] if mail.parent else None
        refs: tuple[str, ...] = ()
        if parent is not None and mail.thread_headers and parent.message_id:
            refs = (*parent.references, parent.message_id)
        msgid = None if mail.key == NO_MESSAGE_ID else message_id(mail)
        text = mail.body
        if parent is not None and mail.quote and mail.kind == "mail":
            text = f"{mail.body}\n\n{quoted_history(mail, parent)}"
        if mail.kind == "bounce":
            assert parent is not None and msgid is not None
            msg = build_bounce(mail, msgid, parent)
        else:
            msg = build_message(mail, msgid, refs, text)
        tidy_parts(msg, mail.key)
        done[mail.key] = Rendered(mail, text, msgid, refs, msg.as_bytes(policy=POLICY))
    return list(done.values())


# --------------------------------------------------------------------------- Maildir output
def write_maildir(rendered: list[Rendered], root: Path) -> None:
    """Write every message under `root`, replacing earlier message files (dotfiles kept)."""
    for folder in FOLDERS:
        for sub in SUBDIRS:
            directory = root / folder / sub
            directory.mkdir(parents=True, exist_ok=True)
            for old in directory.iterdir():
                if old.is_file() and not old.name.startswith("."):
                    old.unlink()
    ordered = sorted(rendered, key=lambda r: (r.mail.when.astimezone(UTC), r.mail.key))
    for number, item in enumerate(ordered, start=1):
        mail = item.mail
        stamp = int(mail.when.timestamp())
        name = f"{stamp}.M{number}P1.sample"
        sub = "new" if mail.flags is None else "cur"
        if mail.flags is not None:
            name += f":2,{mail.flags}"  # Maildir info: flags in ASCII order
        item.path = root / mail.folder / sub / name
        item.path.write_bytes(item.raw)
        os.utime(item.path, (stamp, stamp))
    for folder in FOLDERS:
        for sub in SUBDIRS:
            directory = root / folder / sub
            keep = directory / ".keep"
            if any(not p.name.startswith(".") for p in directory.iterdir()):
                keep.unlink(missing_ok=True)
            else:
                keep.write_bytes(b"")


# --------------------------------------------------------------------------- verification
def all_defects(msg: Message) -> Iterator[str]:
    for part in msg.walk():
        for defect in part.defects:
            yield f"{part.get_content_type()}: {type(defect).__name__}"
        for name, value in part.items():
            for defect in getattr(value, "defects", ()):
                yield f"{name}: {type(defect).__name__}"


def verify(rendered: list[Rendered]) -> list[str]:
    """Re-read every written file; return the problems found (an empty list when all good)."""
    problems: list[str] = []
    ids = {r.message_id for r in rendered if r.message_id}

    def check(ok: bool, item: Rendered, what: str) -> None:
        if not ok:
            problems.append(f"{item.path.name} ({item.mail.key}): {what}")

    for item in rendered:
        raw = item.path.read_bytes()
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        lines = raw.split(b"\r\n")
        check(b"\n" not in raw.replace(b"\r\n", b""), item, "bare LF or CR")
        check(max(len(line) for line in lines) <= 998, item, "line longer than 998 octets")
        check(raw.isascii(), item, "8-bit data in a 7-bit message")
        check(not list(all_defects(msg)), item, f"defects {list(all_defects(msg))}")
        check(str(msg["Subject"]) == item.mail.subject, item, "subject does not round-trip")
        check(msg["From"].addresses[0].display_name == item.mail.sender.name, item, "From name")
        check((msg["Message-ID"] is None) == (item.mail.key == NO_MESSAGE_ID), item, "Message-ID")
        for ref in str(msg.get("References", "")).split():
            check(ref in ids, item, f"References an unknown message {ref}")
        body = msg.get_body(("plain", "html"))
        check(body is not None and bool(body.get_content().strip()), item, "no body")
        if item.mail.kind == "bounce":
            check(msg.get_content_type() == "multipart/report", item, "not multipart/report")
            check(msg.get_param("report-type") == "delivery-status", item, "report-type")
            report = [p for p in msg.walk() if p.get_content_type() == "message/delivery-status"]
            blocks = report[0].get_payload() if report else []
            fields = blocks[1] if isinstance(blocks, list) and len(blocks) == 2 else None
            if not isinstance(fields, Message):
                fields = Message()
            check(fields.get("Action") == "failed", item, "DSN Action")
            check(fields.get("Status") == "5.1.1", item, "DSN Status")
        if item.mail.attachment is not None:
            parts = list(msg.iter_attachments())
            data = parts[0].get_content() if parts else b""
            check(data == item.mail.attachment[2], item, "attachment does not round-trip")
    check_pdf(PROPOSAL_PDF, problems)
    return problems


def check_pdf(data: bytes, problems: list[str]) -> None:
    """Every xref offset must point at its `N 0 obj` line, and startxref at `xref`."""
    start = int(data.rsplit(b"startxref\n", 1)[1].split(b"\n", 1)[0])
    if not data[start:].startswith(b"xref\n"):
        problems.append("PDF: startxref does not point at the xref table")
    rows = data[start:].split(b"\n")[3:]
    for number, row in enumerate(rows, start=1):
        if not row.endswith(b" n "):
            break
        if not data[int(row[:10]) :].startswith(b"%d 0 obj" % number):
            problems.append(f"PDF: xref entry {number} is wrong")


# --------------------------------------------------------------------------- summary, main
def summary(rendered: list[Rendered], root: Path) -> str:
    def cell(text: str, width: int) -> str:
        return text if len(text) <= width else text[: width - 1] + "…"

    def label(mail: Mail) -> str:
        people = (mail.sender, *mail.to, *mail.cc)
        if mail.kind == "mail" and all(p.domain == ALICE.domain for p in people):
            return "internal"
        return mail.kind

    rows = sorted(rendered, key=lambda r: r.mail.when.astimezone(UTC))
    out = [f"{'file':<38} {'date (UTC)':<16} {'kind':<10} {'from':<32} subject"]
    for item in rows:
        mail = item.mail
        kind = label(mail)
        out.append(
            f"{cell(str(item.path.relative_to(root)), 38):<38} "
            f"{mail.when.astimezone(UTC):%Y-%m-%d %H:%M} {kind:<10} "
            f"{cell(mail.sender.email, 32):<32} {cell(mail.subject, 60)}"
        )
    counts = {f: sum(1 for r in rendered if r.mail.folder == f) for f in FOLDERS}
    unread = sum(1 for r in rendered if r.mail.flags is None)
    size = sum(len(r.raw) for r in rendered)
    out.append(
        f"{len(rendered)} messages ({', '.join(f'{f} {n}' for f, n in counts.items())}; "
        f"{unread} in new/), {size:,} bytes, all parsed without defects "
        "(one lacks a Message-ID on purpose)"
    )
    return "\n".join(out)


def same_tree(left: Path, right: Path) -> bool:
    def files(root: Path) -> set[Path]:
        return {p.relative_to(root) for p in root.rglob("*") if p.is_file()}

    names = files(left)
    return names == files(right) and all(
        filecmp.cmp(left / name, right / name, shallow=False) for name in names
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="Maildir root to write")
    parser.add_argument(
        "--check", action="store_true", help="only compare a fresh build with --out; 1 if stale"
    )
    parser.add_argument("--quiet", action="store_true", help="do not print the summary table")
    args = parser.parse_args(argv)
    rendered = render_all(build_mails())
    emit: Callable[[str], object] = (lambda _s: None) if args.quiet else print
    if args.check:
        with tempfile.TemporaryDirectory() as scratch:
            write_maildir(rendered, Path(scratch))
            problems = verify(rendered)
            fresh = same_tree(Path(scratch), args.out)
        for problem in problems:
            print(problem, file=sys.stderr)
        if not fresh:
            print(f"{args.out} is stale: run examples/make_sample_mailbox.py", file=sys.stderr)
        return 0 if fresh and not problems else 1
    write_maildir(rendered, args.out)
    problems = verify(rendered)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    emit(summary(rendered, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
