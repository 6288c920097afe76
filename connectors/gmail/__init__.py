"""The Gmail connector: `connector` (the SPI), `api` (credentials, client, retries, batches,
errors), `auth` (OAuth consent), `changes` (labels as folders, the cursor, history records as
changes), `check` (step-by-step diagnosis).
"""

from connectors.gmail.connector import GmailConnector

__all__ = ["GmailConnector"]
