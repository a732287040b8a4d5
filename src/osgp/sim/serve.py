"""Serve simulated meters on real byte streams: pseudo-terminals (a serial
device path any serial tool opens) or TCP sockets on the loopback interface
(``socket://127.0.0.1:PORT`` for pyserial).

One thread runs every meter: it waits on all the streams at once
(``selectors``), hands what arrives to the meter's port with the seconds since
the start as ``now`` (the one place the simulator reads a clock: the meters
themselves run on whatever time they are given), and writes back what the port
sends.  Meters use the MEP link with the legacy suite (key 01 x 16, the MEP
guide's default MAK, p.14) or the optical link (C12.18, blank password).

:class:`CnipMeterServer` serves commissioned meters with PLC ports on one UDP
socket as CN/IP (ISO/IEC 14908-4): each datagram's LPDU goes to the meter it
addresses, the replies go back to the sender.  Its virtual clock runs
``speed`` virtual seconds per wall second from ``start_offset``, so a client
sees load-profile intervals close quickly; it can drop, duplicate and
reorder datagrams.

:func:`url_meter` builds one such meter for pyserial's ``osgpsim://`` URLs
(``osgpsim://meter?link=optical&seed=7``), in the opening process: its
virtual time is the seconds since the port was opened.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import random
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import IO, Any, Callable, Dict, List, Optional, Tuple

from osgp import _backend
from osgp.errors import ConfigurationError
from osgp.link import lon
from osgp.link.carrier import MepDeviceCarrier, OpticalDeviceCarrier, PlcDeviceCarrier
from osgp.security.suite import MEP_ENVELOPE, PLC_ENVELOPE, LegacySuite
from osgp.sim.faults import Faults
from osgp.sim.keys import enable_key_renewal
from osgp.sim.meter import LoadProfileConfig, SimMeter
from osgp.transport.core import CnipFraming

__all__ = [
    "DEFAULT_MEP_KEY",
    "ServedMeter",
    "MeterServer",
    "CnipMeterServer",
    "serve_cnip",
    "UrlMeter",
    "url_meter",
]

_frames, _ = _backend.load("frames")

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
    virtual time is ``start_offset`` plus its advance since the server was
    made (the meters are run to ``start_offset`` first, so they have
    readings).  Virtual time runs at wall speed: the serial links' own
    timeouts (MEP inter-byte, C12.18 channel traffic) are real time.  Use as
    a context manager or call :meth:`start` and :meth:`close`."""

    def __init__(
        self,
        n: int,
        *,
        kind: str = "pty",
        link: str = "mep",
        seed: int = 1,
        key: bytes = DEFAULT_MEP_KEY,
        start_time: float = DEFAULT_START,
        start_offset: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if kind not in ("pty", "tcp") or link not in ("mep", "optical"):
            raise ConfigurationError("kind is 'pty' or 'tcp', link is 'mep' or 'optical'")
        if start_offset < 0:
            raise ConfigurationError("start_offset must not be negative")
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
        self._v0 = start_offset
        for i in range(n):
            meter = _meter(f"SIM{seed:04d}{i:05d}"[:16], seed * 100_003 + i, link, key, start_time)
            meter.advance(start_offset)
            self.served.append(self._open(meter))
        self._t0 = clock()

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
        return self._v0 + (self._clock() - self._t0)

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


# -- CN/IP -------------------------------------------------------------------------------------
_ADDR_SUBNET_NODE, _ADDR_NEURON_ID = 2, 3  # LonTalk address formats (ISO/IEC 14908-1)


class CnipMeterServer:
    """``n`` simulated meters with PLC ports behind one UDP socket, as CN/IP.

    Meter ``i`` is subnet/node ``subnet``/``i + 1`` (the next subnet after
    127 nodes), Neuron ID ``04 00 00 00`` + ``i + 1`` (2 bytes) and has a
    12-byte OMA key drawn from ``seed``: :attr:`fleet` lists them as a
    concentrator commissions them.  Virtual time is ``start_offset +
    speed x`` (wall seconds since :meth:`start`); the meters are run to
    ``start_offset`` first, so they have readings.

    Datagram faults, each with its probability per datagram, from
    ``fault_seed``: ``drop`` (either way), ``duplicate`` (a reply sent twice)
    and ``reorder`` (a reply held back up to ``reorder_s`` wall seconds, so
    later ones overtake it).  ``faults`` are per-meter faults
    (:class:`osgp.sim.Faults`).  Hold :attr:`lock` to look at the meters
    while the server runs."""

    def __init__(
        self,
        n: int,
        *,
        seed: int = 1,
        subnet: int = 2,
        host: str = "127.0.0.1",
        port: int = 0,
        speed: float = 1.0,
        start_offset: float = 0.0,
        start_time: float = 1_767_225_600.0,
        lp: Optional[LoadProfileConfig] = None,
        faults: Optional[Faults] = None,
        drop: float = 0.0,
        duplicate: float = 0.0,
        reorder: float = 0.0,
        reorder_s: float = 0.3,
        fault_seed: int = 0,
    ) -> None:
        if not 1 <= n <= 32_000:
            raise ConfigurationError("serve 1 to 32,000 meters")
        if speed < 0 or start_offset < 0:
            raise ConfigurationError("speed and start_offset must not be negative")
        for name, p in (("drop", drop), ("duplicate", duplicate), ("reorder", reorder)):
            if not 0.0 <= p <= 1.0:
                raise ConfigurationError(f"{name}: probability {p} outside 0..1")
        self.drop, self.duplicate, self.reorder = drop, duplicate, reorder
        self.reorder_s = reorder_s
        self.injected: Dict[str, int] = {"drop": 0, "duplicate": 0, "reorder": 0}
        self.lock = threading.RLock()
        self.fleet: List[Dict[str, Any]] = []
        self.meters: List[SimMeter] = []
        self._by_address: Dict[int, Any] = {}  # (subnet << 7 | node) -> port
        self._by_neuron: Dict[bytes, Any] = {}
        keys = random.Random(seed)
        for i in range(n):
            sn = lon.SubnetNode(subnet + i // 127, 1 + i % 127)
            nid = bytes([4, 0, 0, 0]) + (i + 1).to_bytes(2, "big")
            key = keys.randbytes(12)
            meter = SimMeter(
                f"SIM{seed:04d}{i:05d}"[:16],
                seed=seed * 100_003 + i,
                start=start_time,
                lp=lp if lp is not None else LoadProfileConfig(),
                faults=faults,
                links=[
                    (
                        PlcDeviceCarrier([sn, lon.NeuronId(nid)], crc=False),
                        LegacySuite(key, PLC_ENVELOPE),
                    )
                ],
            )
            meter.advance(start_offset)
            enable_key_renewal(meter)  # EP45, for `osgp op key-renewal`
            self.meters.append(meter)
            self._by_address[sn.subnet << 7 | sn.node] = meter.ports[0]
            self._by_neuron[nid] = meter.ports[0]
            self.fleet.append(
                {
                    "serial": meter.serial,
                    "neuron_id": nid.hex(),
                    "subnet": sn.subnet,
                    "node": sn.node,
                    "key": key.hex(),
                }
            )
        self.framing = CnipFraming()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.address: Tuple[str, int] = self.sock.getsockname()[:2]
        self.url = f"udp://{self.address[0]}:{self.address[1]}"
        self.stats: Dict[str, int] = {"received": 0, "sent": 0, "unaddressed": 0, "bad": 0}
        self._rng = random.Random(fault_seed)
        self._held: List[Tuple[float, int, bytes, Any]] = []  # (wall time, order, wire, to)
        self._order = 0
        self._polled: set = set()
        self._speed = speed
        self._v0 = start_offset
        self._t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    # -- the virtual clock
    def now(self) -> float:
        """Virtual seconds (what the meters are run to)."""
        return self._v0 + (time.monotonic() - self._t0) * self._speed

    def set_speed(self, speed: float) -> None:
        """Run on at ``speed`` virtual seconds per wall second (0 stops time)."""
        with self.lock:
            self._v0, self._t0, self._speed = self.now(), time.monotonic(), speed

    def freeze(self) -> float:
        """Stop the virtual clock (meters record nothing new); returns its time."""
        self.set_speed(0.0)
        return self._v0

    # -- serving
    def _ports_for(self, lpdu: bytes) -> List[Any]:
        try:
            h = _frames.lon_parse(lpdu, True, False)
        except Exception:  # noqa: BLE001 - a bad frame is a counted drop
            self.stats["bad"] += 1
            return []
        if h[2] == _ADDR_SUBNET_NODE:
            p = self._by_address.get(h[7] << 7 | (h[8] & 0x7F))
            return [p] if p is not None else []
        if h[2] == _ADDR_NEURON_ID:
            p = self._by_neuron.get(bytes(h[12]))
            return [p] if p is not None else []
        return [m.ports[0] for m in self.meters]  # group and broadcast: every meter looks

    def handle(self, wire: bytes, sender: Any) -> None:
        """Serve one datagram from ``sender`` (the server thread does this)."""
        self.stats["received"] += 1
        rng = self._rng
        if self.drop and rng.random() < self.drop:
            self.injected["drop"] += 1
            return
        lpdu = self.framing.unwrap(wire)
        if lpdu is None:
            self.stats["bad"] += 1
            return
        with self.lock:
            ports = self._ports_for(lpdu)
            if not ports:
                self.stats["unaddressed"] += 1
            now = self.now()
            for port in ports:
                port.receive_data(lpdu, now)
                self._drain(port, now, sender)

    def _drain(self, port: Any, now: float, to: Any) -> None:
        out = port.poll_transmit(now)
        while out is not None:
            self._reply(self.framing.wrap(out), to)
            out = port.poll_transmit(now)
        if port.next_deadline() is not None and port not in self._polled:
            self._polled.add(port)  # frames the meter's faults hold back: look again soon
            self._hold(time.monotonic() + 0.01, b"", (port, to))

    def _reply(self, wire: bytes, to: Any) -> None:
        rng = self._rng
        if self.drop and rng.random() < self.drop:
            self.injected["drop"] += 1
            return
        copies = 1
        if self.duplicate and rng.random() < self.duplicate:
            self.injected["duplicate"] += 1
            copies = 2
        for _ in range(copies):
            if self.reorder and rng.random() < self.reorder:
                self.injected["reorder"] += 1
                self._hold(time.monotonic() + rng.uniform(0, self.reorder_s), wire, to)
            else:
                self._send(wire, to)

    def _hold(self, at: float, wire: bytes, to: Any) -> None:
        self._order += 1
        heapq.heappush(self._held, (at, self._order, wire, to))

    def _send(self, wire: bytes, to: Any) -> None:
        try:
            self.sock.sendto(wire, to)
            self.stats["sent"] += 1
        except OSError:
            self.stats["bad"] += 1

    def _release(self) -> float:
        """Send what is due; the wait until the next held datagram."""
        t = time.monotonic()
        while self._held and self._held[0][0] <= t:
            _, _, wire, to = heapq.heappop(self._held)
            if wire:
                self._send(wire, to)
            else:  # a meter port to poll again
                port, dest = to
                self._polled.discard(port)
                with self.lock:
                    self._drain(port, self.now(), dest)
        return min(0.05, self._held[0][0] - t) if self._held else 0.05

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ)
        self.sock.setblocking(False)
        try:
            while not self._stop.is_set():
                if not sel.select(self._release()):
                    continue
                while True:
                    try:
                        wire, sender = self.sock.recvfrom(65535)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:  # e.g. ICMP unreachable from a client that went away
                        continue
                    self.handle(wire, sender)
        finally:
            sel.close()

    def start(self) -> CnipMeterServer:
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="osgp-simulate-cnip", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.sock.close()

    def __enter__(self) -> CnipMeterServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()


def add_cnip_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``osgp simulate``: ``--start-offset`` for every kind,
    the others for ``--link plc --kind cnip`` only."""
    p.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="virtual seconds per wall second (cnip only; serial links run at wall speed)",
    )
    p.add_argument(
        "--start-offset",
        type=float,
        default=86400.0,
        help="virtual seconds the meters have run at the start (default one day)",
    )
    p.add_argument(
        "--port", type=int, default=0, help="UDP port (cnip only; default: any free one)"
    )
    p.add_argument(
        "--drop", type=float, default=0.0, help="probability a datagram is lost (cnip only)"
    )
    p.add_argument(
        "--fleet-json", default=None, help="write the meters as JSON to this file (cnip only)"
    )


CNIP_ONLY = {"speed": 1.0, "port": 0, "drop": 0.0, "fleet_json": None}  # option -> default


def serve_cnip(args: argparse.Namespace, out: IO[str]) -> int:
    """``osgp simulate --link plc --kind cnip``: print the URL, then each meter
    (serial, neuron_id, subnet, node, key) as a JSON line; serve until
    ``args.duration`` seconds pass (or forever)."""
    with CnipMeterServer(
        args.meters,
        seed=args.seed,
        port=args.port,
        speed=args.speed,
        start_offset=args.start_offset,
        drop=args.drop,
    ) as server:
        if args.fleet_json:
            with open(args.fleet_json, "w") as f:
                json.dump({"url": server.url, "meters": server.fleet}, f)
        print(json.dumps({"url": server.url}), file=out)
        for m in server.fleet:
            print(json.dumps(m), file=out)
        out.flush()
        try:
            if args.duration is None:
                while True:
                    time.sleep(3600)
            time.sleep(args.duration)
        except KeyboardInterrupt:
            pass
    return 0


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
