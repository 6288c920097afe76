"""The Microsoft 365 connector (Microsoft Graph): `connector` (the SPI), `http` (retries,
throttling, errors translated), `auth` (MSAL), `folders` (which folders to sync), `check` (step-
by-step diagnosis).
"""

from connectors.graph.connector import GraphConnector

__all__ = ["GraphConnector"]
