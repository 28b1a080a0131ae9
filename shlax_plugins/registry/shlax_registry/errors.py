"""The registry error type, in a module of its own so hook modules can catch it without
importing the HTTP client (and ssl) on every run."""

from __future__ import annotations

from typing import Optional


class RegistryError(Exception):
    """A registry said no, or could not be reached (``unreachable``)."""

    def __init__(self, message: str, *, status: Optional[int] = None, unreachable: bool = False):
        super().__init__(message)
        self.message = message
        self.status = status
        self.unreachable = unreachable
