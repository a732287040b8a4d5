"""Drive a sans-IO session over a transport: the one module that knows the
session API (``start``, ``receive_data``, ``timeout``, :class:`Transmit`
events), kept apart so the transports do not depend on it.

The response timer is the link profile's (``carrier.profile.
response_timeout_ms``, MEP guide p.20: 500 ms) unless ``response_timeout`` is
given; it is armed whenever a frame goes out and, on expiry, ``timeout()`` is
called (the session resends or fails the operation).  ``timeout`` bounds the
whole run.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Callable, List, Optional

from osgp.errors import ConfigurationError
from osgp.services.session import Transmit
from osgp.transport.core import check_timeout
from osgp.transport.errors import TransportError, TransportTimeout

__all__ = [
    "response_timeout_of",
    "run_until_complete",
    "async_run_until_complete",
    "serve",
    "async_serve",
    "SessionDevice",
]


def response_timeout_of(session: Any) -> float:
    """The session's link response timer in seconds."""
    ms = getattr(getattr(session.carrier, "profile", None), "response_timeout_ms", None)
    if ms is None:
        raise ConfigurationError(
            f"{type(session.carrier).__name__} has no response timer: pass response_timeout="
        )
    return float(ms) / 1000.0


class _Run:
    """The bookkeeping shared by the sync and asyncio drivers (no I/O)."""

    def __init__(
        self,
        session: Any,
        op: Any,
        url: str,
        timeout: float,
        response_timeout: Optional[float],
        on_event: Optional[Callable[[Any], None]],
        now: float,
    ) -> None:
        self.session, self.op, self.url = session, op, url
        self.total = check_timeout(timeout)
        self.rt = (
            response_timeout_of(session)
            if response_timeout is None
            else check_timeout(response_timeout, "response_timeout")
        )
        self.on_event = on_event
        self.end = now + self.total
        self.timer = now + self.rt

    def frames(self, events: List[Any], now: float) -> List[bytes]:
        """The bytes to send; arms the response timer when there are any."""
        out = []
        for ev in events:
            if isinstance(ev, Transmit):
                out.append(ev.data)
            elif self.on_event is not None:
                self.on_event(ev)
        if out:
            self.timer = now + self.rt
        return out

    def wait(self, now: float) -> float:
        """How long to wait for bytes; raises when the whole run is out of time."""
        if now >= self.end:
            raise TransportTimeout(self.url, f"{self.op.name}", self.total)
        return max(0.0, min(self.timer, self.end) - now)

    def expired(self, now: float) -> bool:
        return now >= self.timer

    def result(self) -> Any:
        if self.op.error is not None:
            raise self.op.error
        return self.op.result


def run_until_complete(
    session: Any,
    transport: Any,
    op: Any,
    timeout: float,
    *,
    response_timeout: Optional[float] = None,
    on_event: Optional[Callable[[Any], None]] = None,
) -> Any:
    """Run ``session`` (with ``op`` queued) over a blocking ``transport`` until
    ``op`` is done; returns its result or raises its error.  Events other than
    Transmit go to ``on_event``."""
    clock = time.monotonic
    run = _Run(session, op, transport.url, timeout, response_timeout, on_event, clock())
    pending = session.start()
    while True:
        for data in run.frames(pending, clock()):
            transport.send(data)
        if op.done:
            return run.result()
        wait = run.wait(clock())
        try:
            pending = session.receive_data(transport.receive(wait))
        except TransportTimeout:
            pending = session.timeout() if run.expired(clock()) else []


async def async_run_until_complete(
    session: Any,
    transport: Any,
    op: Any,
    timeout: float,
    *,
    response_timeout: Optional[float] = None,
    on_event: Optional[Callable[[Any], None]] = None,
) -> Any:
    """:func:`run_until_complete` over an asyncio transport."""
    clock = asyncio.get_running_loop().time
    run = _Run(session, op, transport.url, timeout, response_timeout, on_event, clock())
    pending = session.start()
    while True:
        for data in run.frames(pending, clock()):
            await transport.send(data)
        if op.done:
            return run.result()
        wait = run.wait(clock())
        try:
            pending = session.receive_data(await transport.receive(wait))
        except TransportTimeout:
            pending = session.timeout() if run.expired(clock()) else []


def _replies(events: List[Any]) -> List[bytes]:
    return [ev.data for ev in events if isinstance(ev, Transmit)]


def serve(session: Any, transport: Any, stop: threading.Event, *, poll: float = 0.05) -> None:
    """Answer requests with a device ``session`` until ``stop`` is set or the
    transport fails or closes (checking ``stop`` every ``poll`` seconds)."""
    while not stop.is_set():
        try:
            data = transport.receive(poll)
        except TransportTimeout:
            continue
        except TransportError:
            return
        for reply in _replies(session.receive_data(data)):
            transport.send(reply)


async def async_serve(session: Any, transport: Any, *, poll: float = 0.5) -> None:
    """:func:`serve` on an asyncio transport, until cancelled or closed."""
    while True:
        try:
            data = await transport.receive(poll)
        except TransportTimeout:
            continue
        except TransportError:
            return
        for reply in _replies(session.receive_data(data)):
            await transport.send(reply)


class SessionDevice:
    """A device session as an in-process device for ``osgpsim://`` (see
    :mod:`osgp.transport.handlers.protocol_osgpsim`)."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.lock = threading.Lock()

    def handle(self, data: bytes) -> bytes:
        with self.lock:
            return b"".join(_replies(self.session.receive_data(data)))
