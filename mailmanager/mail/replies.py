"""What a message's text says about replies (French and English heuristics), for reminders.

The parser reads these once, when a message is synced (`parsing.ParsedMessage.text_facts`),
and ingest stores them on the message: a reminder evaluation reads no body (but those of
messages stored before it did, `reminders.facts`).

- `new_text`: the part of a body the sender wrote, without the quoted message, the
  attribution line above it ("Le ... a écrit :", "On ... wrote:", Outlook's "De : / From:"
  block) or the signature after "-- ".
- `expectation`: does our message expect a reply? Not when it is a pure closer ("Merci,
  bonne journée"), a calendar answer (iCalendar METHOD:REPLY, RFC 5546 §3.2.3), or when it
  has no question mark and no request ("pourriez-vous", "merci de me confirmer", "could
  you", "let me know", "please confirm"...). Polite formulas such as "n'hésitez pas si
  vous avez des questions" or "let me know if you have any questions" are not requests.
- `return_date`: the day an out-of-office correspondent is back ("de retour le 23
  novembre", "absent jusqu'au 27/11", "back on November 23", "returning 11/27"). An end
  date ("jusqu'au", "until", "du ... au ...") means back the day after.
- `text_facts`: what the reminder rules read in one message (`TextFacts`).

These are heuristics on purpose: the decision that a message is a reply at all rests on
headers and threading, never on this text.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, timedelta

# Where the sender's text ends: an attribution line, an original or forwarded message, a
# rule above Outlook's header block, a mobile signature, or the "-- " signature delimiter
# (one pattern, so each line is tried once).
_ATTRIBUTION = r"^\s*(?:on|le)\b.{0,300}\b(?:wrote|a écrit|a ecrit)\s*:\s*$"
_TEXT_END = re.compile(
    "|".join(
        f"(?:{p})"
        for p in (
            _ATTRIBUTION,
            r"^\s*-{2,}\s*(?:original message|message d'origine|mail original|forwarded message|"
            r"message transféré|courriel original)\s*-{2,}",
            r"^\s*_{8,}\s*$",
            r"^\s*(?:sent from my|envoyé de mon|envoyé depuis|get outlook for)\b",
            r"^--\s*$",
        )
    ),
    re.I,
)
_WRAPPED_ATTRIBUTION = re.compile(_ATTRIBUTION, re.I)
_HEADER_BLOCK = re.compile(r"^\s*\*?(?:from|de)\s*:\*?\s+\S", re.I)
_HEADER_NEXT = re.compile(r"^\s*\*?(?:sent|envoyé|date|to|à|subject|objet|cc)\s*:", re.I)


def new_text(body: str) -> str:
    """The text the sender wrote: quoted parts, attribution lines and signature removed."""
    lines = body.replace("\r\n", "\n").split("\n")
    kept: list[str] = []
    for i, line in enumerate(lines):
        if _TEXT_END.match(line):
            break
        following = lines[i + 1] if i + 1 < len(lines) else ""
        if ("@" in line or "@" in following) and _WRAPPED_ATTRIBUTION.match(
            (line + " " + following).strip()
        ):
            break  # an attribution line wrapped after the address
        if _HEADER_BLOCK.match(line) and any(_HEADER_NEXT.match(n) for n in lines[i + 1 : i + 4]):
            break
        if line.lstrip().startswith(">"):
            continue
        kept.append(line)
    return "\n".join(kept).strip()


def _fold(text: str) -> str:
    text = text.replace("\u2019", "'").replace("\u00a0", " ").lower()
    return " ".join(text.split())


_CLOSERS = sorted(
    (
        # French
        "merci beaucoup",
        "merci bien",
        "merci encore",
        "merci à vous",
        "merci a vous",
        "mille mercis",
        "merci",
        "bonne journée",
        "bonne journee",
        "bonne soirée",
        "bonne soiree",
        "bonne fin de journée",
        "bonne fin de journee",
        "bonne semaine",
        "bonne fin de semaine",
        "bon week-end",
        "bon weekend",
        "bien reçu",
        "bien recu",
        "bien noté",
        "bien note",
        "c'est noté",
        "c'est note",
        "noté",
        "parfait",
        "super",
        "top",
        "d'accord",
        "entendu",
        "très bien",
        "tres bien",
        "cordialement",
        "bien cordialement",
        "bien à vous",
        "bien a vous",
        "salutations",
        "sincères salutations",
        "à bientôt",
        "a bientot",
        "à très vite",
        "bonjour",
        "bonsoir",
        "salut",
        "madame",
        "monsieur",
        "chère",
        "cher",
        # English
        "thanks a lot",
        "thanks again",
        "thank you very much",
        "thank you so much",
        "thank you",
        "thanks",
        "many thanks",
        "cheers",
        "have a nice day",
        "have a good day",
        "have a great day",
        "have a nice weekend",
        "have a great weekend",
        "have a good weekend",
        "received",
        "got it",
        "noted",
        "perfect",
        "great",
        "sounds good",
        "ok",
        "okay",
        "best regards",
        "kind regards",
        "warm regards",
        "regards",
        "all the best",
        "best",
        "see you",
        "talk soon",
        "hi",
        "hello",
        "dear",
    ),
    key=len,
    reverse=True,
)
_CLOSER_RE = re.compile(r"(?<!\w)(?:" + "|".join(re.escape(c) for c in _CLOSERS) + r")(?!\w)")
_WORD = re.compile(r"[^\W\d_]+")
_CLOSER_WORDS = frozenset(w for c in _CLOSERS for w in _WORD.findall(c))

# Courtesy formulas that look like requests but expect nothing.
_SOFT = re.compile(
    r"(?:n'hésitez pas|n'hesitez pas|don't hesitate|do not hesitate|feel free|"
    r"(?:let me know|let us know|tenez-moi au courant) if you (?:have|need)|"
    r"si (?:vous avez|besoin)|if you have any (?:questions?|concerns?)|"
    r"please find|please see|veuillez trouver|please note|"
    r"pour toute (?:question|information))[^.!?\n]*[.!?]?"
)
# Links and addresses. An address is tried only where a word starts: `\S+@\S+` tried at every
# position rescans each word to its end; from a word's start it finds the same matches.
_URL = re.compile(r"(?:https?://|www\.)\S+|(?<!\S)\S+@\S+")
_REQUESTS = re.compile(
    r"(?<!\w)(?:"
    # French
    r"pourriez[- ]vous|pouvez[- ]vous|pourrais[- ]tu|peux[- ]tu|auriez[- ]vous|avez[- ]vous|"
    r"seriez[- ]vous|êtes[- ]vous|etes[- ]vous|souhaitez[- ]vous|voulez[- ]vous|"
    r"merci de (?:bien vouloir|me|m'|nous|nous|confirmer|valider|retourner|renvoyer|"
    r"transmettre|communiquer|indiquer|préciser|preciser|signer|compléter|completer)|"
    r"je vous remercie de (?:bien vouloir|me|m'|nous)|veuillez|vous serait-il possible|"
    r"(?:dans l'attente|j'attends|nous attendons|en attente) de votre|"
    r"(?:votre|ton) (?:retour|réponse|reponse|accord|confirmation|avis|validation)|"
    r"tenez[- ]moi au courant|faites[- ]moi savoir|revenir vers (?:moi|nous)|"
    r"qu'en pensez[- ]vous|s'il vous pla[iî]t|svp|stp|"
    # English
    r"could you|can you|would you|will you|would it be possible|is it possible|"
    r"please|kindly|let me know|let us know|get back to (?:me|us)|"
    r"look(?:ing)? forward to (?:hearing|your)|awaiting your|your (?:feedback|thoughts|"
    r"confirmation|approval|answer|reply|decision)|are you (?:available|free|able)|"
    r"do you (?:have|think|agree|want|need)|when (?:can|could|would|will) you"
    r")(?!\w)"
)


@dataclass(frozen=True)
class Expectation:
    """Whether a message expects a reply, and why (one short English phrase)."""

    expects: bool
    reason: str


def is_pure_closer(text: str) -> bool:
    """True when `text` holds thanks, greetings and closing formulas and nothing else but
    a name (at most three other words)."""
    folded = _fold(text)
    if not folded or "?" in folded:
        return False
    # A formula covers whole words, so a word no formula has always stays: with more than
    # three of them the answer is known without trying every formula everywhere.
    others = 0
    for word in _WORD.finditer(folded):
        if word.group() not in _CLOSER_WORDS:
            others += 1
            if others > 3:
                return False
    rest, found = _CLOSER_RE.subn(" ", folded)
    return found > 0 and len(_WORD.findall(rest)) <= 3


# Literal text every match of `_URL` and of `_SOFT` contains: where none is present the
# substitution is skipped (the same result, without scanning a long text once per pattern).
_URL_MARKS = ("://", "www.", "@")
_SOFT_MARKS = (
    "sitez pas", "hesitate", "feel free", "if you ", "si vous avez", "si besoin",
    "please find", "please see", "veuillez trouver", "please note", "pour toute ",
)  # fmt: skip


def has_request(text: str) -> bool:
    """True when `text` asks something: a question mark or a request formula."""
    folded = _fold(text)
    if any(mark in folded for mark in _URL_MARKS):
        folded = _URL.sub(" ", folded)
    if any(mark in folded for mark in _SOFT_MARKS):
        folded = _SOFT.sub(" ", folded)
    return "?" in folded or _REQUESTS.search(folded) is not None


# How much of the sender's text the heuristics read: its first and its last 2,000 characters
# (some 30 lines each: a request opens or closes a message). A question only in the middle
# of a longer text is not looked for, so that the parser's cost per message stays small and
# bounded: it runs these on every message it syncs.
TEXT_BUDGET = 2000


def _ends(text: str) -> str:
    """`text`, or its first and last `TEXT_BUDGET` characters when it is longer."""
    if len(text) <= 2 * TEXT_BUDGET:
        return text
    return text[:TEXT_BUDGET] + "\n" + text[-TEXT_BUDGET:]


def expectation(body: str, calendar_reply: bool = False) -> Expectation:
    """Does a message with this body expect an answer? See the module docstring; of a long
    text, only its two ends are read (`TEXT_BUDGET`)."""
    if calendar_reply:
        return Expectation(False, "calendar answer")
    text = _ends(new_text(body))
    if is_pure_closer(text):
        return Expectation(False, "closing words only")
    if has_request(text):
        return Expectation(True, "question or request")
    return Expectation(False, "no question or request")


# --- out-of-office return dates -------------------------------------------------------------

_MONTHS = (
    r"janvier|janv|février|fevrier|févr|fevr|fév|fev|mars|avril|avr|mai|juin|juillet|juil|"
    r"août|aout|septembre|sept|octobre|novembre|décembre|decembre|déc|"
    r"january|jan|february|feb|march|mar|april|apr|may|june|jun|july|jul|august|aug|"
    r"september|sep|october|oct|november|nov|december|dec"
)
_WEEKDAY_NAMES = {
    "lundi": 0,
    "mardi": 1,
    "mercredi": 2,
    "jeudi": 3,
    "vendredi": 4,
    "samedi": 5,
    "dimanche": 6,
    "monday": 0,
    "tuesday": 1,
    "wednesday": 2,
    "thursday": 3,
    "friday": 4,
    "saturday": 5,
    "sunday": 6,
}
_WEEKDAYS = "|".join(_WEEKDAY_NAMES)
_DATE = re.compile(
    rf"(?:(?:{_WEEKDAYS}),?\s+)?(?:the\s+)?(?:"
    rf"(?P<d1>\d{{1,2}})(?:er|st|nd|rd|th)?\.?\s+(?:of\s+)?(?P<m1>{_MONTHS})\b\.?"
    rf"(?:,?\s+(?P<y1>\d{{4}}))?"
    rf"|(?P<m2>{_MONTHS})\b\.?\s+(?P<d2>\d{{1,2}})(?:st|nd|rd|th)?\b(?:,?\s+(?P<y2>\d{{4}}))?"
    rf"|(?P<y4>\d{{4}})-(?P<m4>\d{{2}})-(?P<d4>\d{{2}})"
    rf"|(?<![\d/.])(?P<a>\d{{1,2}})[/.](?P<b>\d{{1,2}})(?:[/.](?P<y3>\d{{4}}|\d{{2}}))?(?![\d/])"
    rf"|(?P<wd>{_WEEKDAYS})\b)"
)
_BACK = re.compile(
    r"(?<!\w)(?:de retour|retour (?:prévu|prevu|au bureau)|serai (?:de retour|joignable|"
    r"disponible|présente?|presente?)|reprendrai|reprise|à partir d|a partir d|dès|back|"
    r"returning|return|available again|from)\W*(?:\w+\W+){0,3}$"
)
# "until" words may be followed by a few words ("jusqu'au lundi"); range connectors ("du 20
# au 27 novembre", "from May 2 to May 6") must stand right before the date.
_UNTIL = re.compile(
    r"(?<!\w)(?:(?:jusqu'(?:au|à|a)|jusqu au|until|till|through|thru)\W*(?:\w+\W+){0,2}"
    r"|(?:au|to|-|–)\s*)$"
)
_HORIZON = timedelta(days=190)  # absences longer than six months are not read
_FRENCH = re.compile(r"(?<!\w)(?:je|nous|serai|absente?|retour|jusqu|congés|conges)(?!\w)")


def _month(word: str) -> int:
    w = unicodedata.normalize("NFKD", word).encode("ascii", "ignore").decode()[:4]
    for prefix, month in (
        ("juin", 6),
        ("jun", 6),
        ("juil", 7),
        ("jul", 7),
        ("jan", 1),
        ("fev", 2),
        ("feb", 2),
        ("mar", 3),
        ("avr", 4),
        ("apr", 4),
        ("mai", 5),
        ("may", 5),
        ("aou", 8),
        ("aug", 8),
        ("sep", 9),
        ("oct", 10),
        ("nov", 11),
        ("dec", 12),
    ):
        if w.startswith(prefix):
            return month
    raise ValueError(word)


def _dated(year: int | None, month: int, day: int, received: date) -> date | None:
    try:
        if year is not None:
            return date(year + 2000 if year < 100 else year, month, day)
        found = date(received.year, month, day)
        if found < received - timedelta(days=7):
            found = date(received.year + 1, month, day)
        return found
    except ValueError:
        return None


def _candidates(m: re.Match[str], received: date, french: bool) -> list[date]:
    g = m.groupdict()
    if g["wd"]:
        ahead = (_WEEKDAY_NAMES[g["wd"]] - received.weekday() - 1) % 7 + 1
        return [received + timedelta(days=ahead)]
    if g["y4"]:
        found = _dated(int(g["y4"]), int(g["m4"]), int(g["d4"]), received)
        return [found] if found else []
    if g["a"]:
        year = int(g["y3"]) if g["y3"] else None
        a, b = int(g["a"]), int(g["b"])
        orders = [(b, a), (a, b)] if french else [(a, b), (b, a)]  # (month, day)
        out = [_dated(year, month, day, received) for month, day in orders]
        return [d for d in out if d is not None]
    day, month_word, year_text = (
        (g["d1"], g["m1"], g["y1"]) if g["d1"] else (g["d2"], g["m2"], g["y2"])
    )
    found = _dated(int(year_text) if year_text else None, _month(month_word), int(day), received)
    return [found] if found else []


def return_date(body: str, received: datetime) -> date | None:
    """The day an out-of-office correspondent is back, read from the notice's text.

    `received` is when the notice arrived: dates without a year are taken in the year
    that puts them after it. Returns None when no date is introduced by a return or
    "until" phrase, or when it is not within six months after `received`.
    """
    text = _fold(new_text(body) or body)
    day0 = received.date()
    french = _FRENCH.search(text) is not None
    best: date | None = None
    for m in _DATE.finditer(text):
        before = text[max(0, m.start() - 60) : m.start()]
        back, until = _BACK.search(before), _UNTIL.search(before)
        if back is None and until is None:
            continue
        shift = 1 if until is not None and (back is None or until.start() > back.start()) else 0
        shifted = [d + timedelta(days=shift) for d in _candidates(m, day0, french)]
        plausible = [d for d in shifted if day0 <= d <= day0 + _HORIZON]
        if plausible and (best is None or min(plausible) > best):
            best = min(plausible)
    return best


# --- what the reminder rules read --------------------------------------------------------


@dataclass(frozen=True)
class TextFacts:
    """What was read in a message's body: whether it expects a reply, and for an absence
    notice the day its sender is back. `TextFacts()` means nothing was read."""

    expectation: Expectation | None = None
    return_date: date | None = None


def text_facts(
    body: str, calendar_reply: bool, out_of_office: bool, received: datetime | None
) -> TextFacts:
    """The facts of a message with this body: its expectation (see `expectation`), and when
    it is an out-of-office notice received at a known time, the return date read in it."""
    back = return_date(body, received) if out_of_office and received is not None else None
    return TextFacts(expectation(body, calendar_reply), back)
