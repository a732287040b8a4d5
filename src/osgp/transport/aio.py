"""asyncio transports over the same core as :mod:`osgp.transport.sync`.

Serial ports go through ``pyserial-asyncio-fast`` when pyserial gives a file
descriptor (device paths, ``spy://`` on one) or a socket (``socket://``);
handlers without one (``loop://``, ``rfc2217://``, ``osgpsim://``) are read by
a helper thread.  TCP and CN/IP use the event loop's own connections and
datagram endpoints.  Every method that waits is bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections import deque
from typing import Any, Awaitable, Callable, Deque, Optional, Tuple, TypeVar
from urllib.parse import urlsplit

import serial
import serial_asyncio_fast

from osgp.transport import memory
from osgp.transport.core import (
    DEFAULT_TIMEOUT,
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
from osgp.transport.sync import cnip_url, open_serial, resolve_udp

__all__ = [
    "AsyncTransport",
    "AsyncSerialTransport",
    "AsyncTcpTransport",
    "AsyncCnipTransport",
    "AsyncMemoryTransport",
    "memory_pair",
    "memory_listen",
    "open_transport",
]

T = TypeVar("T")
_POLL = 0.05  # seconds: how often the helper thread of fd-less serial ports checks for close
_DRAIN = 64  # at most the datagrams read at once after one readiness (then the loop goes on)
_MAX_DATAGRAM = 256 * 1024  # what asyncio's datagram transport reads at once


class AsyncTransport(Channel):
    """Base of the asyncio transports.  Subclasses connect in ``_open`` and
    deliver what arrives through ``_feed`` / ``_lost``; ``_transport`` is
    the asyncio transport written to."""

    def __init__(
        self, url: str, framing: Optional[Framing] = None, *, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self.core = TransportCore(url, framing)
        self.timeout = check_timeout(timeout, positive=True)
        self._transport: Any = None
        self._rx: Deque[bytes] = deque()
        self._eof: Optional[TransportError] = None
        self._waiter: Optional[asyncio.Future[None]] = None
        self._writable: Optional[asyncio.Future[None]] = None
        self._gone: Optional[asyncio.Future[None]] = None
        self._receiver: Optional[Callable[[bytes], None]] = None
        self._batch_end: Optional[Callable[[], None]] = None

    def set_receiver(
        self,
        receiver: Optional[Callable[[bytes], None]],
        batch_end: Optional[Callable[[], None]] = None,
    ) -> None:
        """Hand each received payload to ``receiver`` as it arrives (in the
        loop's thread, no task or future per payload) instead of queueing it
        for :meth:`receive`; what already waits goes to it at once.  None
        queues again.  ``batch_end``: called once after the payloads that
        arrived together (the datagrams waiting at one wake-up, one read of a
        stream), e.g. to send once for all of them."""
        self._receiver = receiver
        self._batch_end = batch_end if receiver is not None else None
        queued = bool(self._rx)
        while receiver is not None and self._rx:
            payload = self.core.incoming(self._rx.popleft())
            if payload is not None:
                receiver(payload)
        if queued:
            self._fed()

    async def _bounded(self, aw: Awaitable[T], what: str) -> T:
        try:
            return await asyncio.wait_for(aw, self.timeout)
        except asyncio.TimeoutError:
            if what == "connect":
                raise ConnectError(self.url, f"timed out after {self.timeout:g} s") from None
            raise TransportTimeout(self.url, what, self.timeout) from None

    async def open(self) -> AsyncTransport:
        if self.core.state == "new":
            self._gone = asyncio.get_running_loop().create_future()
            await self._open()
        self.core.opened()
        return self

    async def close(self) -> None:
        if not self.core.closing():
            return
        self._eof = self._eof or TransportClosed(self.url)
        self._wake()
        if self._transport is not None:
            self._transport.close()
            if self._gone is not None:
                try:
                    await asyncio.wait_for(asyncio.shield(self._gone), self.timeout)
                except asyncio.TimeoutError:
                    log.debug("CLOSE %s: no confirmation in %g s", self.url, self.timeout)

    async def __aenter__(self) -> AsyncTransport:
        return await self.open()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def send(self, data: bytes) -> None:
        self.core.check_open()
        if self._eof is not None:  # the peer has gone
            raise self._eof
        await self._write(self.core.outgoing(data))

    def send_nowait(self, data: bytes) -> bool:
        """Send ``data`` as :meth:`send` does but without a coroutine, when
        the transport can (its write does not block and its buffer is not
        full); False, with nothing sent, when it cannot: then await
        :meth:`send`."""
        if self._writable is not None or not self._writes_at_once():
            return False
        if self._eof is not None:
            self.core.check_open()
            raise self._eof
        self._put(self.core.outgoing(data))  # which checks that it is open
        return True

    def _writes_at_once(self) -> bool:
        return True

    def _put(self, wire: bytes) -> None:
        """Hand ``wire`` to the asyncio transport (which buffers what the OS
        does not take at once)."""
        self._transport.write(wire)

    async def _write(self, wire: bytes) -> None:
        self._put(wire)
        if self._writable is not None:  # the asyncio buffer is full: wait for it to drain
            await self._bounded(asyncio.shield(self._writable), "write")

    async def receive(self, timeout: Optional[float] = None) -> bytes:
        """The next payload, waiting at most ``timeout`` seconds (default: the
        transport's timeout); a stream transport returns all bytes that wait."""
        self.core.check_open()
        t = self.timeout if timeout is None else check_timeout(timeout)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + t
        while True:
            while self._rx:
                if self.datagram:
                    wire = self._rx.popleft()
                else:
                    wire = b"".join(self._rx)
                    self._rx.clear()
                payload = self.core.incoming(wire)
                if payload is not None:
                    return payload
            if self._eof is not None:
                raise self._eof
            left = deadline - loop.time()
            if left <= 0:
                raise TransportTimeout(self.url, "receive", t)
            self._waiter = loop.create_future()
            try:
                await asyncio.wait_for(self._waiter, left)
            except asyncio.TimeoutError:
                pass
            finally:
                self._waiter = None

    # -- called by the protocols (in the loop's thread)
    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _feed(self, wire: bytes) -> None:
        receiver = self._receiver
        if receiver is not None:
            payload = self.core.incoming(wire)
            if payload is not None:
                receiver(payload)
            return
        self._rx.append(bytes(wire))
        self._wake()

    def _fed(self) -> None:
        """What arrived together has gone to the receiver."""
        if self._batch_end is not None:
            self._batch_end()

    def _lost(self, exc: Optional[BaseException]) -> None:
        if self._eof is None:
            self._eof = (
                TransportClosed(self.url, "closed by the peer")
                if exc is None
                else TransportError(f"{self.url}: connection lost: {exc}")
            )
        if self._gone is not None and not self._gone.done():
            self._gone.set_result(None)
        self._wake()

    def _pause(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()

    def _resume(self) -> None:
        w, self._writable = self._writable, None
        if w is not None and not w.done():
            w.set_result(None)

    async def _open(self) -> None:
        raise NotImplementedError


class _StreamProtocol(asyncio.Protocol):
    def __init__(self, owner: AsyncTransport) -> None:
        self.owner = owner

    def data_received(self, data: bytes) -> None:
        self.owner._feed(data)
        self.owner._fed()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.owner._lost(exc)

    def pause_writing(self) -> None:
        self.owner._pause()

    def resume_writing(self) -> None:
        self.owner._resume()


# -- serial ports -------------------------------------------------------------------------
class _ThreadedSerial:
    """The asyncio-transport face of a pyserial port without a file
    descriptor: a helper thread reads, writes go to the executor."""

    def __init__(self, loop: asyncio.AbstractEventLoop, proto: _StreamProtocol, ser: Any):
        self.loop, self.proto, self.serial = loop, proto, ser
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"osgp-serial {ser.port}")
        self.thread.daemon = True
        self.thread.start()

    def _deliver(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop has closed: nobody is listening any more
            self.stop.set()

    def _run(self) -> None:
        ser = self.serial
        ser.timeout = _POLL
        error: Optional[BaseException] = None
        while not self.stop.is_set():
            try:
                data = ser.read(max(1, ser.in_waiting))
            except (OSError, serial.SerialException) as exc:
                error = exc
                break
            if data:
                self._deliver(self.proto.data_received, data)
        try:
            ser.close()
        finally:
            self._deliver(self.proto.connection_lost, error)

    async def write(self, wire: bytes) -> None:
        await self.loop.run_in_executor(None, self.serial.write, wire)

    def close(self) -> None:
        self.stop.set()


class AsyncSerialTransport(AsyncTransport):
    """Any ``serial.serial_for_url`` URL on the event loop; ``options`` go to
    pyserial (``baudrate`` ...)."""

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT, **options: Any) -> None:
        super().__init__(url, timeout=timeout)
        self.options = options

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        proto = _StreamProtocol(self)
        if urlsplit(self.url).scheme.lower() == "socket":
            # pyserial-asyncio-fast opens socket:// with the loop's own TCP connection
            try:
                self._transport, _ = await self._bounded(
                    serial_asyncio_fast.create_serial_connection(
                        loop, lambda: proto, self.url, timeout=0, **self.options
                    ),
                    "connect",
                )
            except (ValueError, OSError, serial.SerialException) as exc:
                raise ConnectError(self.url, str(exc)) from exc
            return
        ser = await self._bounded(
            loop.run_in_executor(None, open_serial, self.url, self.timeout, self.options),
            "connect",
        )
        try:
            ser.fileno()
        except (OSError, ValueError, AttributeError):
            self._transport = _ThreadedSerial(loop, proto, ser)
            return
        self._transport, _ = await serial_asyncio_fast.connection_for_serial(
            loop, lambda: proto, ser
        )

    def _writes_at_once(self) -> bool:
        return not isinstance(self._transport, _ThreadedSerial)

    async def _write(self, wire: bytes) -> None:
        if isinstance(self._transport, _ThreadedSerial):
            try:
                await self._bounded(self._transport.write(wire), "write")
            except serial.SerialTimeoutException:
                raise TransportTimeout(self.url, "write", self.timeout) from None
            except (OSError, serial.SerialException) as exc:
                raise TransportError(f"{self.url}: write failed: {exc}") from exc
        else:
            await super()._write(wire)


# -- TCP ------------------------------------------------------------------------------------
class AsyncTcpTransport(AsyncTransport):
    """A TCP stream (``tcp://host:port``) on the event loop."""

    def __init__(self, host: str, port: int, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__(f"tcp://{host}:{port}", timeout=timeout)
        self.address = (host, port)

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._transport, _ = await self._bounded(
                loop.create_connection(lambda: _StreamProtocol(self), *self.address), "connect"
            )
        except OSError as exc:
            raise ConnectError(self.url, str(exc)) from exc


# -- CN/IP over UDP ---------------------------------------------------------------------------
class _DatagramProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: AsyncCnipTransport) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: Tuple[Any, ...]) -> None:
        owner = self.owner
        sock, incoming = owner._sock, owner.core.incoming
        listening = owner.remote is None  # answers go to whoever sent last
        # asyncio reads one datagram a readiness: the others waiting now are
        # read here, in the same wake-up (until the transport closes: _eof)
        for _ in range(_DRAIN + 1):
            if listening:
                owner.peer = addr
            receiver = owner._receiver
            if receiver is None:
                owner._feed(data)
            else:  # what _feed does, a call fewer a datagram
                payload = incoming(data)
                if payload is not None:
                    receiver(payload)
            if sock is None or owner._eof is not None:
                break
            try:
                data, addr = sock.recvfrom(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self.error_received(exc)
                break
        owner._fed()

    def error_received(self, exc: Exception) -> None:
        # e.g. ICMP port unreachable: the peer may come up later; the
        # response timer decides
        log.debug("%s: %s", self.owner.url, exc)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.owner._lost(exc)


class AsyncCnipTransport(AsyncTransport):
    """CN/IP (ISO/IEC 14908-4) over a UDP datagram endpoint; ``remote``,
    ``local`` and ``session`` as in :class:`osgp.transport.sync.CnipTransport`."""

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
        self.peer: Optional[Tuple[Any, ...]] = None
        self.local_address: Optional[Tuple[Any, ...]] = None
        self._sock: Optional[socket.socket] = None  # the endpoint's socket, read when drained
        # the connected socket send_nowait writes to itself (None: through asyncio)
        self._direct: Optional[socket.socket] = None

    @property
    def framing(self) -> CnipFraming:
        return self.core.framing  # type: ignore[return-value]

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        remote = local = None
        if self.local is not None:
            family, local = resolve_udp(self.url, *self.local)
        if self.remote is not None:
            family, remote = resolve_udp(self.url, *self.remote)
        # the socket made here (bound, connected) so that the protocol can
        # read every datagram waiting at a wake-up
        try:
            sock = socket.socket(family, socket.SOCK_DGRAM)
        except OSError as exc:  # e.g. an address family this host lacks
            raise ConnectError(self.url, str(exc)) from exc
        try:
            sock.setblocking(False)
            if local is not None:
                sock.bind(local)
            if remote is not None:
                sock.connect(remote)  # a UDP connect: no packet, at once
            self._transport, _ = await self._bounded(
                loop.create_datagram_endpoint(lambda: _DatagramProtocol(self), sock=sock),
                "connect",
            )
        except OSError as exc:
            sock.close()
            raise ConnectError(self.url, str(exc)) from exc
        except BaseException:  # a bounded wait ran out, or the task was cancelled
            sock.close()
            raise
        self._sock = sock
        self.peer = remote
        self.local_address = self._transport.get_extra_info("sockname")
        if remote is not None and self._writes_at_once():
            self._direct = sock

    def send_nowait(self, data: bytes) -> bool:
        sock = self._direct
        if sock is None or self._eof is not None:
            return super().send_nowait(data)
        wire = self.core.outgoing(data)  # which checks that it is open
        # what asyncio's sendto does first, without its checks: the socket
        # is connected and nothing waits in the transport's buffer
        try:
            sock.send(wire)
        except (BlockingIOError, InterruptedError):
            self._direct = None  # from now on behind asyncio's buffer, in order
            self._transport.sendto(wire)
        except OSError as exc:  # e.g. ICMP port unreachable: the response timer decides
            log.debug("%s: %s", self.url, exc)
        return True

    def _lost(self, exc: Optional[BaseException]) -> None:
        self._direct = None
        super()._lost(exc)

    def _put(self, wire: bytes) -> None:
        if self.remote is not None:
            self._transport.sendto(wire)
        elif self.peer is None:
            raise TransportError(f"{self.url}: no peer has sent a packet yet")
        else:
            self._transport.sendto(wire, self.peer)


# -- in memory ----------------------------------------------------------------------------------
class AsyncMemoryTransport(AsyncTransport):
    """One end of a :class:`osgp.transport.memory.MemoryLink` on this event
    loop (created inside it); the other end may be sync or async."""

    def __init__(self, link: memory.MemoryLink, side: int, *, timeout: float = DEFAULT_TIMEOUT):
        super().__init__(link.url, MessageFraming(), timeout=timeout)
        self.link = link
        self.inbox, self.outbox = link.ends(side)
        self._loop = asyncio.get_running_loop()
        self.core.opened()
        self.inbox.waker = self._ring
        self._pull()

    def _ring(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self._pull)
        except RuntimeError:  # this end's loop has closed
            pass

    def _pull(self) -> None:
        while True:
            item = self.inbox.get()
            if item is None:
                break
            self._feed(item)
        self._fed()
        if self.inbox.closed:
            self._lost(None)

    async def close(self) -> None:
        if self.core.closing():
            memory.unlisten(self.link)
            self.inbox.close()
            self.outbox.close()
            self._eof = self._eof or TransportClosed(self.url)
            self._wake()

    def _put(self, wire: bytes) -> None:
        if not self.outbox.put(wire):
            raise TransportClosed(self.url, "closed by the peer")


def memory_pair(name: str = "pair", *, timeout: float = DEFAULT_TIMEOUT) -> Tuple[Any, Any]:
    """Two connected in-memory transports on the running loop, both open."""
    link = memory.MemoryLink(name)
    return (
        AsyncMemoryTransport(link, 0, timeout=timeout),
        AsyncMemoryTransport(link, 1, timeout=timeout),
    )


def memory_listen(name: str, *, timeout: float = DEFAULT_TIMEOUT) -> AsyncMemoryTransport:
    """The listening end of ``mem://name`` on the running loop."""
    return AsyncMemoryTransport(memory.listen(name), 1, timeout=timeout)


# -- factory ------------------------------------------------------------------------------------
async def open_transport(
    url: str, *, timeout: float = DEFAULT_TIMEOUT, **options: Any
) -> AsyncTransport:
    """The asyncio form of :func:`osgp.transport.sync.open_transport`."""
    ep = endpoint_for(url, options)
    t: AsyncTransport
    if ep.kind == "tcp":
        t = AsyncTcpTransport(ep.host, ep.port, timeout=timeout)
    elif ep.kind == "udp":
        t = AsyncCnipTransport(
            (ep.host, ep.port), local=ep.local, session=ep.session, timeout=timeout
        )
    elif ep.kind == "mem":
        return AsyncMemoryTransport(memory.connect(ep.name), 0, timeout=timeout)
    else:
        t = AsyncSerialTransport(url, timeout=timeout, **options)
    t.core.url = url
    return await t.open()
