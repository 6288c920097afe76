"""Loopback fakes of cloud mail APIs (Gmail, Graph, EWS): real HTTP servers on 127.0.0.1."""
