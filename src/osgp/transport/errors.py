"""Transport errors: every one names the URL of the channel that failed."""

from __future__ import annotations

from osgp.errors import ResponseTimeout, TransportError

__all__ = ["TransportError", "ConnectError", "TransportTimeout", "TransportClosed"]


class ConnectError(TransportError):
    """The channel could not be opened (no such port, connection refused,
    unknown URL scheme, no listener); ``url`` names it."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        super().__init__(f"{url}: cannot connect: {reason}")


class TransportTimeout(ResponseTimeout):
    """Nothing arrived (or a write did not complete) within ``timeout`` seconds."""

    def __init__(self, url: str, what: str, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        super().__init__(f"{url}: {what} timed out after {timeout:g} s")


class TransportClosed(TransportError):
    """The channel is closed: by us (use after ``close``) or by the peer."""

    def __init__(self, url: str, reason: str = "closed") -> None:
        self.url = url
        super().__init__(f"{url}: {reason}")
