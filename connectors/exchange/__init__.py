"""The Exchange on-premises connector (EWS): `connector` (the SPI), `ews` (exchangelib accounts,
TLS, errors), `soap` (EWS operations answered as plain values), `config` (its options), `check`
(step-by-step diagnosis).
"""

from connectors.exchange.connector import ExchangeConnector

__all__ = ["ExchangeConnector"]
