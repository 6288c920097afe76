"""`python -m mailmanager`."""

from mailmanager.cli import app

app.run()
