"""Serve simulated meters on real byte streams: pseudo-terminals (a serial
device path any serial tool opens) or TCP sockets on the loopback interface
(``socket://127.0.0.1:PORT`` for pyserial).

One thread runs every meter: it waits on all the streams at once
(``selectors``), hands what arrives to the meter's port with the seconds since
the start as ``now`` (the one place the simulator reads a clock: the meters
themselves run on whatever time they are given), and writes back what the port
sends.  Meters use the MEP link with the legacy suite (key 01 x 16, the MEP
guide's default MAK, p.14) or the optical link (C12.18, blank password).

:func:`url_meter` builds one such meter for pyserial's ``osgpsim://`` URLs
(``osgpsim://meter?link=optical&seed=7``), in the opening process: its
virtual time is the seconds since the port was opened.
"""

from __future__ import annotations

import os
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

from osgp.errors import ConfigurationError
from osgp.link.carrier import MepDeviceCarrier, OpticalDeviceCarrier
from osgp.security.suite import MEP_ENVELOPE, LegacySuite
from osgp.sim.meter import SimMeter

__all__ = ["DEFAULT_MEP_KEY", "ServedMeter", "MeterServer", "UrlMeter", "url_meter"]

DEFAULT_MEP_KEY = bytes([1]) * 16  # default MAK of the MEP guide examples (p.14)
DEFAULT_START = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC: the meters' true time at 0


def _meter(serial: str, seed: int, link: str, key: bytes, start: float) -> SimMeter:
    """A meter with one port: MEP with the legacy suite, or optical (no suite)."""
    if link not in ("mep", "optical"):
        raise ConfigurationError(f"link is 'mep' or 'optical', not {link!r}")
    carrier: Any = MepDeviceCarrier() if link == "mep" else OpticalDeviceCarrier()
    suite = LegacySuite(key, MEP_ENVELOPE) if link == "mep" else None
    return SimMeter(serial, seed=seed, start=start, links=[(carrier, suite)])


@dataclass
class ServedMeter:
    """One simulated meter and where to reach it."""

    meter: SimMeter
    url: str
    link: str
    fds: List[Any] = field(default_factory=list)


class MeterServer:
    """``n`` simulated meters, each on its own pseudo-terminal (``kind="pty"``)
    or loopback TCP port (``kind="tcp"``), on ``link`` ``"mep"`` or
    ``"optical"``.  ``clock``: any monotonic clock in seconds; the meters'
    virtual time is its advance since the server was made.  Use as a context
    manager or call :meth:`start` and :meth:`close`."""

    def __init__(
        self,
        n: int,
        *,
        kind: str = "pty",
        link: str = "mep",
        seed: int = 1,
        key: bytes = DEFAULT_MEP_KEY,
        start_time: float = DEFAULT_START,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if kind not in ("pty", "tcp") or link not in ("mep", "optical"):
            raise ConfigurationError("kind is 'pty' or 'tcp', link is 'mep' or 'optical'")
        if kind == "pty" and not hasattr(os, "openpty"):
            raise ConfigurationError("pseudo-terminals need a POSIX system; use kind='tcp'")
        if not 1 <= n <= 1000:
            raise ConfigurationError("serve 1 to 1,000 meters")
        self.kind, self.link = kind, link
        self.sel = selectors.DefaultSelector()
        self.served: List[ServedMeter] = []
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._clock = clock
        self._t0 = clock()
        for i in range(n):
            meter = _meter(
                f"SIM{seed:04d}{i:05d}"[:16], seed * 100_003 + i, link, key, start_time
            )
            self.served.append(self._open(meter))

    # -- streams
    def _open(self, meter: SimMeter) -> ServedMeter:
        port = meter.ports[0]
        if self.kind == "pty":
            master, slave = os.openpty()
            _raw(slave)
            s = ServedMeter(meter, os.ttyname(slave), self.link, [master, slave])
            self.sel.register(master, selectors.EVENT_READ, (port, master))
            return s
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.setblocking(False)
        url = f"socket://127.0.0.1:{listener.getsockname()[1]}"
        self.sel.register(listener, selectors.EVENT_READ, (port, None))
        return ServedMeter(meter, url, self.link, [listener])

    def _now(self) -> float:
        return self._clock() - self._t0

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _ in self.sel.select(timeout=0.05):
                port, conn = key.data
                if conn is None:  # a listener: accept the client
                    try:
                        c, _ = key.fileobj.accept()  # type: ignore[union-attr]
                    except OSError:
                        continue
                    c.setblocking(False)
                    self.sel.register(c, selectors.EVENT_READ, (port, c))
                    continue
                try:
                    data = os.read(conn, 4096) if isinstance(conn, int) else conn.recv(4096)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    if not isinstance(conn, int):
                        self.sel.unregister(conn)
                        conn.close()
                    continue
                now = self._now()
                port.receive_data(data, now)
                out = port.poll_transmit(now)
                while out is not None:
                    _write_all(conn, out)
                    out = port.poll_transmit(now)

    def start(self) -> MeterServer:
        self._thread = threading.Thread(target=self._run, name="osgp-simulate", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        for key in list(self.sel.get_map().values()):
            obj: Any = key.fileobj
            self.sel.unregister(obj)
            if not isinstance(obj, int):
                obj.close()
        for s in self.served:
            for fd in s.fds:
                if isinstance(fd, int):
                    try:
                        os.close(fd)
                    except OSError:
                        pass
                else:
                    fd.close()
        self.sel.close()

    def urls(self) -> Dict[str, str]:
        return {s.meter.serial: s.url for s in self.served}

    def __enter__(self) -> MeterServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _raw(fd: int) -> None:
    """No echo, no line discipline: the pty carries bytes as they are."""
    import termios
    import tty

    tty.setraw(fd, termios.TCSANOW)


def _write_all(conn: Any, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(conn, view) if isinstance(conn, int) else conn.send(view)
        except (BlockingIOError, InterruptedError):
            time.sleep(0.001)
            continue
        view = view[n:]


class UrlMeter:
    """A simulated meter behind ``osgpsim://``: each ``handle(data)`` runs the
    meter up to the seconds since this object was made (``clock``: any
    monotonic clock), hands ``data`` to its port and returns all it sends."""

    def __init__(self, meter: SimMeter, clock: Callable[[], float] = time.monotonic) -> None:
        self.meter = meter
        self.port = meter.ports[0]
        self._clock = clock
        self._t0 = clock()

    def handle(self, data: bytes) -> bytes:
        now = self._clock() - self._t0
        self.port.receive_data(data, now)
        out = bytearray()
        frame = self.port.poll_transmit(now)
        while frame is not None:
            out += frame
            frame = self.port.poll_transmit(now)
        return bytes(out)


def url_meter(params: Dict[str, str]) -> UrlMeter:
    """The ``osgpsim://meter?...`` factory.  Parameters: ``link`` (``mep``,
    the default, or ``optical``), ``seed`` (integer, default 1), ``serial``
    (default from the seed), ``key`` (MEP access key in hex, default 01 x 16),
    ``start`` (true UTC epoch second at the open, default 2026-01-01)."""
    unknown = set(params) - {"link", "seed", "serial", "key", "start"}
    if unknown:
        raise ConfigurationError(f"unknown osgpsim parameter(s): {', '.join(sorted(unknown))}")
    try:
        seed = int(params.get("seed", "1"))
        key = bytes.fromhex(params["key"]) if "key" in params else DEFAULT_MEP_KEY
        start = float(params.get("start", DEFAULT_START))
    except ValueError as exc:
        raise ConfigurationError(f"bad osgpsim parameter: {exc}") from exc
    serial = params.get("serial", f"SIM{seed:010d}"[-16:])
    return UrlMeter(_meter(serial, seed, params.get("link", "mep"), key, start))
