"""The IMAP connector: `connector` (the SPI: folders, cursors, batches), `adapter` (imapclient
behind one small port: every IMAP quirk), `wire` (a fast parser for the FETCH responses it asks
for).
"""

from connectors.imap.connector import ImapConnector

__all__ = ["ImapConnector"]
