"""`python -m mailmanager`."""

from mailmanager.cli.app import run

run()
