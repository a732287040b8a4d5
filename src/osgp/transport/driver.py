"""Drive a sans-IO session over a transport: the one module that knows the
session API (``poll_transmit``, ``receive_data``, ``next_deadline``,
``handle_timeout``), kept apart so the transports do not depend on it.

The session owns its timers (the link profile's response timer, MEP guide
p.20: 500 ms; request gaps; retries): the driver sends what
``poll_transmit`` gives, waits for bytes until ``next_deadline``, and calls
``handle_timeout`` when nothing arrived by then.  ``timeout`` bounds the whole
run.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Callable, List, Optional

from osgp.transport.core import check_timeout
from osgp.transport.errors import TransportError, TransportTimeout

__all__ = [
    "run_until_complete",
    "async_run_until_complete",
    "serve",
    "async_serve",
    "SessionDevice",
]

_IDLE_WAIT = 0.05  # nothing timed: look again this often (the run stays bounded)


class _Run:
    """The bookkeeping shared by the sync and asyncio drivers (no I/O)."""

    def __init__(
        self,
        session: Any,
        op: Any,
        url: str,
        timeout: float,
        on_event: Optional[Callable[[Any], None]],
        now: float,
    ) -> None:
        self.session, self.op, self.url = session, op, url
        self.total = check_timeout(timeout)
        self.on_event = on_event
        self.end = now + self.total

    def outgoing(self, now: float) -> List[bytes]:
        return _drain(self.session, now)

    def events(self, events: List[Any]) -> None:
        if self.on_event is not None:
            for ev in events:
                self.on_event(ev)

    def wait(self, now: float) -> float:
        """How long to wait for bytes; raises when the whole run is out of time."""
        if now >= self.end:
            raise TransportTimeout(self.url, f"{self.op.name}", self.total)
        deadline = self.session.next_deadline()
        until = self.end if deadline is None else min(deadline, self.end)
        if deadline is None:
            until = min(until, now + _IDLE_WAIT)
        return max(0.0, until - now)

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
    on_event: Optional[Callable[[Any], None]] = None,
) -> Any:
    """Run ``session`` (with ``op`` queued) over a blocking ``transport`` until
    ``op`` is done; returns its result or raises its error.  The session's
    events go to ``on_event``."""
    clock = time.monotonic
    run = _Run(session, op, transport.url, timeout, on_event, clock())
    while True:
        for data in run.outgoing(clock()):
            transport.send(data)
        if op.done:
            return run.result()
        wait = run.wait(clock())
        try:
            data = transport.receive(wait)
        except TransportTimeout:
            run.events(session.handle_timeout(clock()))
            continue
        run.events(session.receive_data(data, clock()))


async def async_run_until_complete(
    session: Any,
    transport: Any,
    op: Any,
    timeout: float,
    *,
    on_event: Optional[Callable[[Any], None]] = None,
) -> Any:
    """:func:`run_until_complete` over an asyncio transport."""
    clock = asyncio.get_running_loop().time
    run = _Run(session, op, transport.url, timeout, on_event, clock())
    while True:
        for data in run.outgoing(clock()):
            await transport.send(data)
        if op.done:
            return run.result()
        wait = run.wait(clock())
        try:
            data = await transport.receive(wait)
        except TransportTimeout:
            run.events(session.handle_timeout(clock()))
            continue
        run.events(session.receive_data(data, clock()))


def _drain(session: Any, now: float = 0.0) -> List[bytes]:
    """Every frame the session has to send now."""
    out = []
    frame = session.poll_transmit(now)
    while frame is not None:
        out.append(frame)
        frame = session.poll_transmit(now)
    return out


def _replies(session: Any, data: bytes) -> List[bytes]:
    session.receive_data(data)
    return _drain(session)


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
        for reply in _replies(session, data):
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
        for reply in _replies(session, data):
            await transport.send(reply)


class SessionDevice:
    """A device session as an in-process device for ``osgpsim://`` (see
    :mod:`osgp.transport.handlers.protocol_osgpsim`)."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.lock = threading.Lock()

    def handle(self, data: bytes) -> bytes:
        with self.lock:
            return b"".join(_replies(self.session, data))
