"""The root of every error mailmanager raises on purpose."""

from __future__ import annotations


class MailmanagerError(Exception):
    """Base class of all mailmanager errors.

    Raised only through subclasses; catching it catches every error we raise on purpose.
    """
