"""The local-mail connector: `connector` (the SPI over Maildir folders, one-message files and mbox
files), `mbox` (reading mbox files).
"""

from connectors.maildir.connector import MaildirConnector

__all__ = ["MaildirConnector"]
