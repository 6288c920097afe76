"""The workspace's words in French and English, chosen from the user's `locale`.

Each page module adds its own strings at import with `add({"key": ("français", "English")})`
(a key may be added once); templates call `t("key", name=...)`, which formats with
`str.format`. A missing key shows as the key itself and is logged, so a page never breaks
on a forgotten string.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

LOCALES = ("fr", "en")
Translator = Callable[..., str]

_CATALOGUE: dict[str, tuple[str, str]] = {}


def add(messages: Mapping[str, tuple[str, str]]) -> None:
    """Add (French, English) strings. Raises ValueError for a key added already with other
    words (two modules would then fight over it)."""
    for key, words in messages.items():
        if _CATALOGUE.get(key, words) != words:
            raise ValueError(f"i18n key {key!r} is defined twice")
        _CATALOGUE[key] = words


def locale_of(value: str | None) -> str:
    """ "fr" or "en" for a user's locale or an Accept-Language header ("en" by default)."""
    first = (value or "").split(",")[0].strip().lower()[:2]
    return first if first in LOCALES else "en"


def translator(locale: str) -> Translator:
    """`t(key, **values)` in `locale`."""
    index = 0 if locale_of(locale) == "fr" else 1

    def t(key: str, /, **values: object) -> str:
        words = _CATALOGUE.get(key)
        if words is None:
            log.warning("missing i18n key", extra={"action": "web_i18n_missing", "key": key})
            return key
        text = words[index]
        return text.format(**values) if values else text

    return t


add(
    {
        # layout
        "app.name": ("mailmanager", "mailmanager"),
        "layout.skip": ("Aller au contenu", "Skip to content"),
        "layout.nav": ("Navigation principale", "Main navigation"),
        "layout.signed_in_as": ("Connecté : {name}", "Signed in: {name}"),
        "layout.sign_out": ("Se déconnecter", "Sign out"),
        "nav.followups": ("Mes relances", "My follow-ups"),
        "nav.clients": ("Clients", "Clients"),
        "nav.review": ("À vérifier", "Review"),
        "nav.admin": ("Administration", "Admin"),
        # errors
        "error.title": ("Erreur", "Error"),
        "error.403": (
            "Cette action n'est pas autorisée : le formulaire a expiré ou ne vient pas de "
            "cette page. Rechargez la page et recommencez.",
            "This action is not allowed: the form expired or did not come from this page. "
            "Reload the page and try again.",
        ),
        "error.404": (
            "Cette page n'existe pas, ou vous n'y avez pas accès.",
            "This page does not exist, or you may not see it.",
        ),
        "error.401": (
            "Connectez-vous pour continuer.",
            "Sign in to continue.",
        ),
        "error.429": (
            "Trop de demandes de lien de connexion. Réessayez dans {minutes} minutes.",
            "Too many sign-in link requests. Try again in {minutes} minutes.",
        ),
        "error.400": ("Demande incorrecte : {detail}", "Bad request: {detail}"),
        "error.back": ("Retour à mes relances", "Back to my follow-ups"),
    }
)
