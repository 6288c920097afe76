"""`python -m mailmanager`."""

from mailmanager.cli import run

run()
