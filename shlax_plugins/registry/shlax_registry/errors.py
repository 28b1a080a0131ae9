"""The registry error type, in a module of its own so hook modules can catch it without
importing the HTTP client (and ssl) on every run."""

from __future__ import annotations

from typing import Optional


class RegistryError(Exception):
    """A registry said no, could not be reached (``unreachable``), or answered something no
    registry sends (see :mod:`shlax_registry.answers`)."""

    def __init__(self, message: str, *, status: Optional[int] = None, unreachable: bool = False,
                 tls: bool = False):
        super().__init__(message)
        self.message = message
        self.status = status            # the HTTP status, when the registry answered one
        self.unreachable = unreachable  # no (complete) answer: connection, timeout, cut-off body
        self.tls = tls                  # the TLS handshake failed (a plain-HTTP registry?)
