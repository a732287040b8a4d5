"""Blocking transports: pyserial ports, TCP, CN/IP over UDP, in-memory.

Every transport is a context manager; ``open`` connects (bounded by
``timeout``), ``send`` writes one payload, ``receive(timeout)`` returns the
next bytes (a stream transport: whatever arrived; a datagram one: exactly one
payload) or raises :class:`TransportTimeout`, ``close`` is idempotent.
A transport is driven by one thread at a time (the in-memory ends may sit in
different threads).
"""

from __future__ import annotations

import socket
import time
from typing import Any, Optional, Tuple

import serial

from osgp.errors import ConfigurationError
from osgp.transport import handlers, memory
from osgp.transport.core import (
    DEFAULT_TIMEOUT,
    MAX_DATAGRAM,
    Channel,
    CnipFraming,
    Framing,
    MessageFraming,
    TransportCore,
    check_timeout,
    endpoint_for,
    log,
)
from osgp.transport.errors import ConnectError, TransportClosed, TransportError, TransportTimeout

__all__ = [
    "Transport",
    "SerialTransport",
    "TcpTransport",
    "CnipTransport",
    "MemoryTransport",
    "memory_pair",
    "memory_listen",
    "open_transport",
]


class Transport(Channel):
    """Base of the blocking transports; subclasses provide ``_open``,
    ``_close``, ``_write`` and ``_read(timeout) -> bytes or None``."""

    def __init__(
        self, url: str, framing: Optional[Framing] = None, *, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self.core = TransportCore(url, framing)
        self.timeout = check_timeout(timeout, positive=True)

    def open(self) -> Transport:
        if self.core.state == "new":
            self._open()
        self.core.opened()  # raises if closed: a closed transport stays closed
        return self

    def close(self) -> None:
        if self.core.closing():
            self._close()

    def __enter__(self) -> Transport:
        return self.open()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        self._write(self.core.outgoing(data))

    def receive(self, timeout: Optional[float] = None) -> bytes:
        """The next payload, waiting at most ``timeout`` seconds (default: the
        transport's timeout)."""
        self.core.check_open()
        t = self.timeout if timeout is None else check_timeout(timeout)
        deadline = time.monotonic() + t
        while True:
            wire = self._read(max(0.0, deadline - time.monotonic()))
            if wire is not None:
                payload = self.core.incoming(wire)
                if payload is not None:
                    return payload
            if time.monotonic() >= deadline:
                raise TransportTimeout(self.url, "receive", t)

    def _fail(self, what: str, exc: BaseException) -> TransportError:
        return TransportError(f"{self.url}: {what} failed: {exc}")

    def _open(self) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    def _write(self, wire: bytes) -> None:
        raise NotImplementedError

    def _read(self, timeout: float) -> Optional[bytes]:
        raise NotImplementedError


# -- pyserial ---------------------------------------------------------------------------
def open_serial(url: str, timeout: float, options: Any) -> serial.SerialBase:
    """``serial.serial_for_url`` with osgp's URL handlers registered and every
    failure as a :class:`ConnectError` naming the URL."""
    handlers.register()
    bounds = {"timeout": 0, "write_timeout": timeout}
    if url.lower().startswith("rfc2217://"):
        del bounds["write_timeout"]  # pyserial's RFC 2217 client refuses write timeouts
    try:
        return serial.serial_for_url(url, **bounds, **options)
    except (ValueError, OSError, NotImplementedError, serial.SerialException) as exc:
        raise ConnectError(url, str(exc)) from exc


class SerialTransport(Transport):
    """Any ``serial.serial_for_url`` URL: a device path, ``socket://``,
    ``rfc2217://``, ``loop://``, ``spy://`` (hex traces to stderr or
    ``?file=``), ``osgpsim://``; ``options`` go to pyserial (``baudrate`` ...)."""

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT, **options: Any) -> None:
        super().__init__(url, timeout=timeout)
        self.options = options
        self.serial: Optional[serial.SerialBase] = None

    def _open(self) -> None:
        self.serial = open_serial(self.url, self.timeout, self.options)

    def _close(self) -> None:
        ser, self.serial = self.serial, None
        if ser is not None:
            ser.close()

    def _port(self) -> serial.SerialBase:
        if self.serial is None:
            raise TransportClosed(self.url)
        return self.serial

    def _write(self, wire: bytes) -> None:
        try:
            self._port().write(wire)
        except serial.SerialTimeoutException:
            raise TransportTimeout(self.url, "write", self.timeout) from None
        except (OSError, serial.SerialException) as exc:
            raise self._fail("write", exc) from exc

    def _read(self, timeout: float) -> Optional[bytes]:
        ser = self._port()
        try:
            if ser.timeout != timeout:
                ser.timeout = timeout
            first = ser.read(1)
            if not first:
                return None
            n = ser.in_waiting
            return first + ser.read(n) if n else first
        except (OSError, serial.SerialException) as exc:
            raise self._fail("read", exc) from exc


# -- TCP --------------------------------------------------------------------------------
class TcpTransport(Transport):
    """A TCP stream (``tcp://host:port``); MEP frames carry their own length,
    so the session's carrier frames the stream."""

    def __init__(self, host: str, port: int, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__(f"tcp://{host}:{port}", timeout=timeout)
        self.address = (host, port)
        self.sock: Optional[socket.socket] = None

    @classmethod
    def from_socket(cls, sock: socket.socket, *, timeout: float = DEFAULT_TIMEOUT) -> TcpTransport:
        """Wrap a connected socket (e.g. one ``accept`` returned), already open."""
        host, port = sock.getpeername()[:2]
        t = cls(host, port, timeout=timeout)
        t.sock = sock
        t.core.opened()
        return t

    def _open(self) -> None:
        try:
            self.sock = socket.create_connection(self.address, timeout=self.timeout)
        except socket.timeout:
            raise ConnectError(self.url, f"timed out after {self.timeout:g} s") from None
        except OSError as exc:
            raise ConnectError(self.url, str(exc)) from exc
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _close(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            sock.close()

    def _socket(self) -> socket.socket:
        if self.sock is None:
            raise TransportClosed(self.url)
        return self.sock

    def _write(self, wire: bytes) -> None:
        sock = self._socket()
        try:
            sock.settimeout(self.timeout)
            sock.sendall(wire)
        except socket.timeout:
            raise TransportTimeout(self.url, "write", self.timeout) from None
        except OSError as exc:
            raise self._fail("write", exc) from exc

    def _read(self, timeout: float) -> Optional[bytes]:
        sock = self._socket()
        try:
            sock.settimeout(timeout)
            data = sock.recv(65536)
        except (socket.timeout, BlockingIOError):  # timeout 0 makes the socket non-blocking
            return None
        except OSError as exc:
            raise self._fail("read", exc) from exc
        if not data:
            raise TransportClosed(self.url, "closed by the peer")
        return data


# -- CN/IP over UDP -----------------------------------------------------------------------
def resolve_udp(url: str, host: str, port: int) -> Tuple[int, Tuple[Any, ...]]:
    """(address family, socket address) of a UDP peer; ConnectError if unknown."""
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except OSError as exc:
        raise ConnectError(url, str(exc)) from exc
    return info[0][0], info[0][4]


def cnip_url(remote: Optional[Tuple[str, int]], local: Optional[Tuple[str, int]]) -> str:
    if remote is not None:
        return f"udp://{remote[0]}:{remote[1]}"
    if local is None:
        raise ConfigurationError("a CN/IP transport needs a remote or a local address")
    return f"udp://@{local[0]}:{local[1]}"


class CnipTransport(Transport):
    """CN/IP (ISO/IEC 14908-4) over UDP: one LonTalk LPDU per datagram behind
    the CN/IP header.  With ``remote`` the socket is connected to that peer
    (``local`` optionally binds it); without, it binds ``local`` and answers
    whoever sent the last packet (a device end)."""

    def __init__(
        self,
        remote: Optional[Tuple[str, int]] = None,
        *,
        local: Optional[Tuple[str, int]] = None,
        session: int = 0,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        super().__init__(cnip_url(remote, local), CnipFraming(session), timeout=timeout)
        self.remote, self.local = remote, local
        self.sock: Optional[socket.socket] = None
        self.peer: Optional[Tuple[Any, ...]] = None
        self.local_address: Optional[Tuple[Any, ...]] = None

    @property
    def framing(self) -> CnipFraming:
        return self.core.framing  # type: ignore[return-value]

    def _open(self) -> None:
        if self.remote is not None:
            family, self.peer = resolve_udp(self.url, *self.remote)
        else:
            family = resolve_udp(self.url, *self.local)[0]  # type: ignore[misc]
        local = resolve_udp(self.url, *self.local)[1] if self.local is not None else None
        try:
            sock = socket.socket(family, socket.SOCK_DGRAM)
        except OSError as exc:  # e.g. an address family this host lacks
            raise ConnectError(self.url, str(exc)) from exc
        try:
            if local is not None:
                sock.bind(local)
            if self.peer is not None:
                sock.connect(self.peer)
        except OSError as exc:
            sock.close()
            raise ConnectError(self.url, str(exc)) from exc
        self.sock = sock
        self.local_address = sock.getsockname()

    def _close(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            sock.close()

    def _write(self, wire: bytes) -> None:
        if self.sock is None:
            raise TransportClosed(self.url)
        if self.peer is None:
            raise TransportError(f"{self.url}: no peer has sent a packet yet")
        try:
            try:
                self.sock.sendto(wire, self.peer)
            except ConnectionRefusedError:
                # an ICMP port-unreachable from an earlier packet is reported
                # here, not for this one: send it again
                self.sock.sendto(wire, self.peer)
        except OSError as exc:
            raise self._fail("send", exc) from exc

    def _read(self, timeout: float) -> Optional[bytes]:
        if self.sock is None:
            raise TransportClosed(self.url)
        try:
            self.sock.settimeout(timeout)
            data, addr = self.sock.recvfrom(MAX_DATAGRAM)
        except (socket.timeout, BlockingIOError):  # timeout 0 makes the socket non-blocking
            return None
        except ConnectionRefusedError as exc:
            # ICMP port unreachable: the peer may come up later; like a lost
            # packet, this is for the response timer to settle
            log.debug("%s: %s", self.url, exc)
            return None
        except OSError as exc:
            raise self._fail("receive", exc) from exc
        if self.remote is None:
            self.peer = addr
        return data


# -- in memory ------------------------------------------------------------------------------
class MemoryTransport(Transport):
    """One end of a :class:`osgp.transport.memory.MemoryLink`; keeps message
    boundaries, so it serves stream and datagram sessions alike."""

    def __init__(self, link: memory.MemoryLink, side: int, *, timeout: float = DEFAULT_TIMEOUT):
        super().__init__(link.url, MessageFraming(), timeout=timeout)
        self.link = link
        self.inbox, self.outbox = link.ends(side)
        self.core.opened()

    def _open(self) -> None:
        """Created open."""

    def _close(self) -> None:
        memory.unlisten(self.link)
        self.inbox.close()
        self.outbox.close()

    def _write(self, wire: bytes) -> None:
        if not self.outbox.put(wire):
            raise TransportClosed(self.url, "closed by the peer")

    def _read(self, timeout: float) -> Optional[bytes]:
        box = self.inbox
        with box.cond:
            box.cond.wait_for(lambda: box.items or box.closed, timeout)
            if box.items:
                return box.items.popleft()
            if box.closed:
                raise TransportClosed(self.url, "closed by the peer")
            return None


def memory_pair(name: str = "pair", *, timeout: float = DEFAULT_TIMEOUT) -> Tuple[Any, Any]:
    """Two connected in-memory transports, both open."""
    link = memory.MemoryLink(name)
    return MemoryTransport(link, 0, timeout=timeout), MemoryTransport(link, 1, timeout=timeout)


def memory_listen(name: str, *, timeout: float = DEFAULT_TIMEOUT) -> MemoryTransport:
    """The listening end of ``mem://name``; ``open_transport`` connects to it once."""
    return MemoryTransport(memory.listen(name), 1, timeout=timeout)


# -- factory --------------------------------------------------------------------------------
def open_transport(url: str, *, timeout: float = DEFAULT_TIMEOUT, **options: Any) -> Transport:
    """Open the transport ``url`` names (see :func:`osgp.transport.core.parse_url`);
    ``options`` go to pyserial for serial URLs."""
    ep = endpoint_for(url, options)
    t: Transport
    if ep.kind == "tcp":
        t = TcpTransport(ep.host, ep.port, timeout=timeout)
    elif ep.kind == "udp":
        t = CnipTransport((ep.host, ep.port), local=ep.local, session=ep.session, timeout=timeout)
    elif ep.kind == "mem":
        return MemoryTransport(memory.connect(ep.name), 0, timeout=timeout)
    else:
        t = SerialTransport(url, timeout=timeout, **options)
    t.core.url = url  # errors name the URL exactly as given
    return t.open()
