"""Connectors: one module per mail provider, each implementing `mailmanager.spi.Connector`."""
