"""Sans-IO client (concentrator) and device sessions.

Nothing here touches a port, a socket or a clock.  The caller feeds received
bytes to ``receive_data`` and timer expiries to ``timeout`` and writes out the
bytes of every :class:`Transmit` event; results come back as
:class:`Completed` / :class:`Failed` events and on the :class:`Operation`
handles.  Which timer to arm is the link profile's business
(``mep.PROFILE.response_timeout_ms``, ...).

A session is built from three pluggable parts:

* a **carrier** (one per link, below): frames a secured message and deframes
  received bytes (MEP length prefix; C12.18 packets with ACK/NAK; LonTalk
  LPDU with SPDU request/response and optional proxy path);
* a **security suite** (``osgp.security.suite``): legacy now, AES later;
* a **service profile** (size limits, checksum).

Operations are generators that yield one message at a time and receive the
response APDU; large reads and writes are split into partial operations of
at most ``max_read`` / ``max_write`` bytes and reassembled.  A retry after a
timeout resends the identical frame (MEP p.21); a 0x0C response resynchronises
the sequence counter and re-sends the request once with the next number.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Dict, Generator, Iterator, List, Optional, Sequence, Tuple, Union

from osgp import _backend, crypto
from osgp.errors import (
    AuthenticationError,
    DecodeError,
    OSGPError,
    ProtocolError,
    ResponseTimeout,
    SequenceError,
)
from osgp.link import lon, lon_proxy, mep, optical
from osgp.security.legacy import SequenceCounter, SequenceWindow
from osgp.security.suite import AUTH_FAILURE, INVALID_SEQUENCE, NullSuite, SecuritySuite
from osgp.services import procedures as P
from osgp.services import transactions as T
from osgp.services.codes import ResponseCode
from osgp.services.messages import (
    PED,
    PENDING,
    FullRead,
    FullWrite,
    PartialRead,
    PartialWrite,
    Response,
    ServiceProfile,
    check_response,
    decode_request,
    decode_response,
)

log = logging.getLogger("osgp.session")
_frames, _ = _backend.load("frames")  # LonTalk header parse (native or twin)

__all__ = [
    "Transmit",
    "Completed",
    "Failed",
    "AlertReceived",
    "Served",
    "Operation",
    "MepCarrier",
    "OpticalCarrier",
    "PlcCarrier",
    "MepDeviceCarrier",
    "OpticalDeviceCarrier",
    "PlcDeviceCarrier",
    "ClientSession",
    "DeviceSession",
]


# -- events -------------------------------------------------------------------
@dataclass(frozen=True)
class Transmit:
    data: bytes


@dataclass(frozen=True)
class Completed:
    op: Operation
    result: Any


@dataclass(frozen=True)
class Failed:
    op: Operation
    error: OSGPError


@dataclass(frozen=True)
class AlertReceived:
    pass


@dataclass(frozen=True)
class Served:
    request: Any
    response: bytes


Event = Union[Transmit, Completed, Failed, AlertReceived, Served]


class Operation:
    """Handle of one client operation; ``done``, ``result``, ``error``."""

    def __init__(self, name: str, gen: Generator[Any, Any, Any]) -> None:
        self.name = name
        self._gen = gen
        self.done = False
        self.result: Any = None
        self.error: Optional[OSGPError] = None
        self.exchanges = 0
        self.retries = 0

    def __repr__(self) -> str:
        return f"Operation({self.name}, done={self.done})"


# -- carriers (client side) -------------------------------------------------------
class MepCarrier:
    """MEP serial: 2-byte length framing, alerts (MEP p.9, p.17)."""

    def __init__(self, profile: mep.MepProfile = mep.PROFILE) -> None:
        self.profile = profile
        self.services = profile.services
        self._reader = mep.FrameReader(profile)

    def frame(self, wire: bytes) -> bytes:
        return mep.frame(wire, self.profile)

    def retransmit(self, last: bytes) -> bytes:
        return last

    def receive(self, data: bytes) -> Tuple[bytes, List[Any]]:
        return b"", [
            x if isinstance(x, bytes) else AlertReceived() for x in self._reader.feed(data)
        ]

    def reset(self) -> None:
        self._reader.reset()


class OpticalCarrier:
    """C12.18 packets with ACK/NAK and toggle-bit duplicate detection."""

    def __init__(self, profile: optical.OpticalProfile = optical.NEGOTIATED) -> None:
        self.profile = profile
        self.services = profile.services
        self.layer = optical.PacketLayer(profile)

    def frame(self, wire: bytes) -> bytes:
        return self.layer.send(wire)

    def retransmit(self, last: bytes) -> bytes:
        return self.layer.timeout()

    def receive(self, data: bytes) -> Tuple[bytes, List[Any]]:
        tx, apdus = self.layer.receive(data)
        return tx, list(apdus)

    def reset(self) -> None:
        pass


class PlcCarrier:
    """LonTalk: the secured message in an APDU (PLC profile, INFERRED), sent
    as SPDU REQUEST; the response is the SPDU RESPONSE with the same
    transaction number.  ``path``: repeaters (SubnetNode) for an Annex G proxy
    chain; the frame then goes to path[0] carrying 0x4D with path[1:]."""

    def __init__(
        self,
        dest: lon.Address,
        *,
        src: Tuple[int, int] = (1, 1),
        profile: lon.PlcProfile = lon.PLC_PROFILE,
        path: Sequence[lon.SubnetNode] = (),
        crc: bool = True,
    ) -> None:
        if len(path) > lon_proxy.MAX_REPEATERS + 1:
            raise ProtocolError("at most 15 repeaters plus the agent")
        self.dest, self.src, self.profile, self.path, self.crc = (
            dest,
            src,
            profile,
            tuple(path),
            crc,
        )
        self.services = profile.services
        self._trans = 0
        self._buf: List[bytes] = []
        self._templates: Dict[Any, Tuple[bytes, int]] = {}

    def _template(self, dest: lon.Address) -> Tuple[bytes, int]:
        """(LPDU header + NPDU up to the SPDU byte, SPDU byte with trans 0):
        encode_lpdu's own output for an empty SPDU, computed once per
        destination (the header of every frame to it is the same but for the
        4-bit transaction number, ISO/IEC 14908-1; reference 6.1)."""
        key = (dest, self.src, self.profile.domain, self.profile.service_request)
        t = self._templates.get(key)
        if t is None:
            n = lon.Npdu(
                self.src[0],
                self.src[1],
                dest,
                lon.Spdu(self.profile.service_request, 0, b""),
                self.profile.domain,
            )
            body = lon.encode_lpdu(lon.Lpdu(n), crc=False)
            t = self._templates[key] = (body[:-1], body[-1])
        return t

    def _target(self) -> lon_proxy.ProxyTarget:
        d = self.dest
        if isinstance(d, lon.SubnetNode):
            return lon_proxy.ProxyTarget(1, bytes([d.subnet, d.node]))
        if isinstance(d, lon.NeuronId):
            return lon_proxy.ProxyTarget(2, bytes([d.subnet]) + bytes(d.nid))
        if isinstance(d, lon.Group):
            return lon_proxy.ProxyTarget(4, bytes([d.group]))
        return lon_proxy.ProxyTarget(3, bytes([getattr(d, "subnet", 0), 0]))

    def frame(self, wire: bytes) -> bytes:
        apdu = self.profile.wrap(wire)
        dest: lon.Address = self.dest
        if self.path:
            t = self._target()
            reps = tuple(lon_proxy.Repeater(r.node, r.subnet) for r in self.path[1:])
            apdu = lon_proxy.encode_proxy(
                lon_proxy.ProxyRequest(
                    reps, lon_proxy.Sicb(t.type), t, apdu, lon_proxy.TxCtrl(4, 3)
                )
            )
            dest = self.path[0]
        self._trans = (self._trans + 1) & 0x0F
        if self.profile.service_request in (lon.SPDU_REQUEST, lon.SPDU_RESPONSE):
            # no member list: template header || SPDU byte (trans in b3..0) || APDU
            head, spdu = self._template(dest)
            body = head + bytes((spdu | self._trans,)) + apdu
            return body + crypto.crc16_lon(body).to_bytes(2, "big") if self.crc else body
        npdu = lon.Npdu(
            self.src[0],
            self.src[1],
            dest,
            lon.Spdu(self.profile.service_request, self._trans, apdu),
            self.profile.domain,
        )
        return lon.encode_lpdu(lon.Lpdu(npdu), crc=self.crc)

    def retransmit(self, last: bytes) -> bytes:
        return last  # identical frame, same transaction number

    def receive(self, data: bytes) -> Tuple[bytes, List[Any]]:
        if self.profile.service_response in (lon.SPDU_REQUEST, lon.SPDU_RESPONSE):
            # header parse by the frames kernel (CRC, version, address and
            # domain lengths, PDU type checked as decode_lpdu does)
            if type(data) is not bytes:
                data = bytes(data)
            h = _frames.lon_parse(data, True, self.crc)
            hdr = h[11]  # SPDU byte: b7 auth, b6..4 type, b3..0 transaction
            if (
                h[1] != lon.PDU_SPDU
                or (hdr >> 4) & 7 != self.profile.service_response
                or hdr & 0x0F != self._trans
            ):
                return b"", []  # not our response (stale transaction or other traffic)
            apdu = data[h[14] + 1 : h[15]]
        else:
            lp = lon.decode_lpdu(data, crc=self.crc)
            pdu = lp.npdu.pdu
            if (
                not isinstance(pdu, lon.Spdu)
                or pdu.type != self.profile.service_response
                or pdu.trans != self._trans
            ):
                return b"", []  # not our response (stale transaction or other traffic)
            apdu = pdu.apdu
        if self.path:
            r = lon_proxy.decode_proxy_response(apdu)
            if isinstance(r, lon_proxy.ProxyFailure):
                stage = len(self.path) - r.count
                return b"", [ProtocolError(f"proxy chain failed at hop {stage} (count {r.count})")]
            apdu = r
        return b"", [self.profile.unwrap(apdu)]

    def reset(self) -> None:
        pass


# -- client session -------------------------------------------------------------------
class ClientSession:
    """Concentrator side.  Start operations (``read``, ``write``, ``call``,
    ``transact``, ``exchange``); each returns an :class:`Operation`.  Bytes to
    send appear as :class:`Transmit` events from ``start``/``receive_data``/
    ``timeout`` (operations run one at a time, in order)."""

    def __init__(
        self,
        carrier: Any,
        suite: Optional[SecuritySuite] = None,
        *,
        seq: int = 0,
        retries: int = 2,
        max_polls: int = 10,
        psn: Optional[P.PsnAllocator] = None,
        tables: T.TransactionTables = T.MEP_TABLES,
    ) -> None:
        self.carrier = carrier
        self.suite: SecuritySuite = suite if suite is not None else NullSuite()
        self.services: ServiceProfile = carrier.services
        self.counter = SequenceCounter(seq)
        self.retries = retries
        self.max_polls = max_polls
        self.psn = psn or P.PsnAllocator()
        self.tables = tables
        self._queue: List[Operation] = []
        self._op: Optional[Operation] = None
        self._msg: Any = None
        self._ctx: Any = None
        self._last: bytes = b""
        self._resynced = False
        self._txn = 0

    # -- public operations
    def read(
        self, table: int, offset: Optional[int] = None, count: Optional[int] = None
    ) -> Operation:
        return self._submit(f"read {table}", self._read(table, offset, count))

    def write(self, table: int, data: bytes, offset: Optional[int] = None) -> Operation:
        return self._submit(f"write {table}", self._write(table, bytes(data), offset))

    def call(
        self,
        number: int,
        params: bytes = b"",
        *,
        mfg: bool = False,
        selector: int = P.SELECT_ON_COMPLETION,
    ) -> Operation:
        return self._submit(f"procedure {number}", self._call(number, bytes(params), mfg, selector))

    def transact(
        self, requests: Sequence[Any], *, txn: Optional[int] = None, groups: Sequence[int] = ()
    ) -> Operation:
        return self._submit("transaction", self._transact(list(requests), txn, tuple(groups)))

    def exchange(self, message: Any) -> Operation:
        """One raw exchange: returns the response APDU undecoded."""
        return self._submit("exchange", self._single(message))

    @property
    def _own_seq(self) -> bool:
        # a suite that numbers its own frames (AES) replaces the legacy counter
        return bool(getattr(self.suite, "owns_sequence", False))

    # -- engine
    def _submit(self, name: str, gen: Generator[Any, bytes, Any]) -> Operation:
        op = Operation(name, gen)
        self._queue.append(op)
        return op

    @property
    def busy(self) -> bool:
        return self._op is not None

    def start(self) -> List[Event]:
        """Begin the next queued operation if idle."""
        if self._op is not None or not self._queue:
            return []
        self._op = self._queue.pop(0)
        return self._advance(None)

    def _advance(self, value: Optional[bytes], error: Optional[OSGPError] = None) -> List[Event]:
        op = self._op
        assert op is not None  # noqa: S101 - internal invariant, not input
        try:
            msg = op._gen.throw(error) if error is not None else op._gen.send(value)
        except StopIteration as stop:
            return self._finish(Completed(op, stop.value))
        except OSGPError as exc:
            return self._finish(Failed(op, exc))
        return [Transmit(self._send(msg))]

    def _finish(self, ev: Union[Completed, Failed]) -> List[Event]:
        op = ev.op
        op.done = True
        if isinstance(ev, Completed):
            op.result = ev.result
        else:
            op.error = ev.error
        self._op = None
        return [ev] + self.start()

    def _send(self, msg: Any) -> bytes:
        self._msg = msg
        self._resynced = False
        return self._seal()

    def _seal(self) -> bytes:
        apdu = self._msg.encode(self.services)
        seq = self.counter.next() if self.suite.request_overhead and not self._own_seq else 0
        wire, self._ctx = self.suite.seal_request(apdu, seq)
        self._last = self.carrier.frame(wire)
        assert self._op is not None  # noqa: S101
        self._op.exchanges += 1
        log.debug("tx %s", self._last.hex())
        return self._last

    def timeout(self) -> List[Event]:
        """The response timer expired: resend the identical frame, or fail."""
        op = self._op
        if op is None:
            return []
        self.carrier.reset()
        if op.retries >= self.retries:
            return self._advance(
                None, ResponseTimeout(f"{op.name}: no response after {op.retries} retries")
            )
        op.retries += 1
        try:
            return [Transmit(self.carrier.retransmit(self._last))]
        except ResponseTimeout as exc:
            return self._advance(None, exc)

    def receive_data(self, data: bytes) -> List[Event]:
        events: List[Event] = []
        try:
            tx, items = self.carrier.receive(data)
        except DecodeError as exc:
            log.debug("dropped undecodable bytes: %s", exc)
            return events  # a garbled frame: wait for the retry timer
        if tx:
            events.append(Transmit(tx))
        for item in items:
            if isinstance(item, AlertReceived):
                events.append(item)
                continue
            if self._op is None:
                continue  # unsolicited / late response
            if isinstance(item, OSGPError):
                events += self._advance(None, item)
                continue
            try:
                apdu = self.suite.open_response(self._ctx, item)
            except AuthenticationError as exc:
                events += self._advance(None, exc)
                continue
            except SequenceError as exc:
                # a replayed or stale response (suites that number their own
                # frames): drop it and wait for the retry timer
                log.debug("dropped response: %s", exc)
                continue
            except DecodeError as exc:
                events += self._advance(None, exc)
                continue
            if (
                self.suite.request_overhead
                and len(apdu) == 5
                and apdu[0] == INVALID_SEQUENCE
                and not self._resynced
            ):
                # MEP p.11/p.15: adopt the device's number, resend with +1.
                current = int.from_bytes(apdu[1:5], "big")
                if self._own_seq:
                    self.suite.resync(current)  # type: ignore[attr-defined]
                else:
                    self.counter.resync(current)
                self._resynced = True
                events.append(Transmit(self._seal()))
                continue
            events += self._advance(apdu)
        return events

    # -- operation generators
    def _single(self, message: Any) -> Generator[Any, bytes, bytes]:
        apdu = yield message
        return apdu

    def _response(self, apdu: bytes, request: Any) -> Optional[bytes]:
        if apdu[:1] == bytes([AUTH_FAILURE]):
            raise AuthenticationError("device reported authentication failure (0x0B)")
        return check_response(decode_response(apdu, request, self.services))

    def _read(
        self, table: int, offset: Optional[int], count: Optional[int]
    ) -> Generator[Any, bytes, bytes]:
        if offset is None and count is None:
            req = FullRead(table)
            return (self._response((yield req), req)) or b""
        offset = offset or 0
        if count is None:
            raise ProtocolError("a partial read needs a count")
        out = bytearray()
        while count > 0 or not out:
            n = min(count, self.services.max_read)
            req2 = PartialRead(table, offset, n)
            data = self._response((yield req2), req2) or b""
            if len(data) != n:
                raise ProtocolError(f"asked for {n} bytes of table {table}, got {len(data)}")
            out += data
            offset += n
            count -= n
            if n == 0:
                break
        return bytes(out)

    def _write(self, table: int, data: bytes, offset: Optional[int]) -> Generator[Any, bytes, None]:
        if offset is None and len(data) <= self.services.max_write:
            req = FullWrite(table, data)
            self._response((yield req), req)
            return None
        off = offset or 0
        for i in range(0, max(len(data), 1), self.services.max_write):
            req2 = PartialWrite(table, off + i, data[i : i + self.services.max_write])
            self._response((yield req2), req2)
        return None

    def _call(
        self, number: int, params: bytes, mfg: bool, selector: int
    ) -> Generator[Any, bytes, bytes]:
        call = P.ProcedureCall(number, self.psn.next(), params, mfg, selector)
        yield from self._write(P.BT07, call.encode(), None)
        if selector in (P.SELECT_NONE,):
            return b""
        for _ in range(self.max_polls):
            res = P.ProcedureResult.decode((yield from self._read(P.BT08, None, None)))
            if not res.matches(call):
                raise ProtocolError(
                    f"BT08 holds procedure {res.proc_id}/PSN {res.psn}, "
                    f"expected {call.proc_id}/PSN {call.psn}"
                )
            if res.result != P.RESULT_ACCEPTED:
                return res.check()
        raise ResponseTimeout(f"procedure {number} still not complete after {self.max_polls} polls")

    def _transact(
        self, requests: List[Any], txn: Optional[int], groups: Tuple[int, ...]
    ) -> Generator[Any, bytes, List[Response]]:
        if txn is None:
            self._txn = (self._txn + 1) & 0xFFFF or 1
            txn = self._txn
        bare = ServiceProfile("bare", 0, 0, False, "transaction records")
        t = T.Transaction(
            txn,
            tuple(r.encode(bare) for r in requests),
            T.GROUP_REQUEST if groups else T.REQUESTS,
            groups,
        )
        image = t.encode()
        if len(image) > self.tables.request_size:
            raise ProtocolError(f"transaction of {len(image)} bytes exceeds the request table")
        yield from self._write(self.tables.request_table, image, 0)
        head = yield from self._read(self.tables.response_table, 0, T.Transaction.header_size())
        size = int.from_bytes(head[:2], "little")
        if int.from_bytes(head[3:5], "little") != txn:
            raise ProtocolError("response table holds another transaction")
        whole = yield from self._read(self.tables.response_table, 0, size)
        rt = T.Transaction.decode(whole)
        if rt.type == T.GROUP_DENIED:
            return []
        return [decode_response(r, q, bare) for r, q in zip(rt.records, requests)]


# -- carriers (device side) -------------------------------------------------------------
class MepDeviceCarrier:
    def __init__(self, profile: mep.MepProfile = mep.PROFILE) -> None:
        self.profile, self.services = profile, profile.services
        self._reader = mep.FrameReader(profile)

    def receive(self, data: bytes) -> Tuple[bytes, List[Any]]:
        return b"", [x for x in self._reader.feed(data) if isinstance(x, bytes)]

    def frame(self, wire: bytes) -> bytes:
        return mep.frame(wire, self.profile)


class OpticalDeviceCarrier:
    def __init__(
        self,
        profile: optical.OpticalProfile = optical.NEGOTIATED,
        psem: Optional[optical.PsemDeviceState] = None,
    ) -> None:
        self.profile, self.services = profile, profile.services
        self.layer = optical.PacketLayer(profile)
        self.psem = psem or optical.PsemDeviceState(
            max_packet_size=profile.packet_size, max_packets=profile.max_packets
        )
        self.layer.rx_limit = self.psem.max_packet_size

    def receive(self, data: bytes) -> Tuple[bytes, List[Any]]:
        return self.layer.receive(data)

    def frame(self, wire: bytes) -> bytes:
        return self.psem.send(self.layer, wire)


class PlcDeviceCarrier:
    """Answers an SPDU REQUEST with an SPDU RESPONSE (same transaction number)
    to the sender.  ``address``: what this device accepts (its SubnetNode
    and/or NeuronId)."""

    def __init__(
        self,
        addresses: Sequence[lon.Address],
        *,
        profile: lon.PlcProfile = lon.PLC_PROFILE,
        crc: bool = True,
        groups: Sequence[int] = (),
    ) -> None:
        self.addresses, self.profile, self.crc = tuple(addresses), profile, crc
        self.services = profile.services
        self.groups = tuple(groups)
        self._reply: Optional[Tuple[lon.Npdu, bool]] = None

    def _mine(self, d: lon.Address) -> bool:
        if isinstance(d, (lon.SubnetNode, lon.NeuronId)):
            return any(d == a for a in self.addresses)
        if isinstance(d, lon.Group):
            return d.group in self.groups
        return isinstance(d, lon.Broadcast)

    def receive(self, data: bytes) -> Tuple[bytes, List[Any]]:
        lp = lon.decode_lpdu(data, crc=self.crc)
        n = lp.npdu
        if (
            not isinstance(n.pdu, lon.Spdu)
            or n.pdu.type != self.profile.service_request
            or not self._mine(n.dest)
        ):
            return b"", []
        apdu = n.pdu.apdu
        proxied = apdu[:1] == bytes([lon_proxy.PROXY])
        if proxied:
            apdu = lon_proxy.decode_proxy(apdu).apdu  # we are the agent's target here
        self._reply = (n, proxied)
        return b"", [self.profile.unwrap(apdu)]

    def frame(self, wire: bytes) -> bytes:
        if self._reply is None:
            raise ProtocolError("no request to answer")
        n, proxied = self._reply
        apdu = self.profile.wrap(wire)
        if proxied:
            apdu = bytes([lon_proxy.PROXY]) + apdu
        me = next(
            (a for a in self.addresses if isinstance(a, lon.SubnetNode)), lon.SubnetNode(0, 0)
        )
        out = lon.Npdu(
            me.subnet,
            me.node,
            lon.SubnetNode(n.src_subnet, n.src_node),
            lon.Spdu(self.profile.service_response, getattr(n.pdu, "trans", 0), apdu),
            n.domain,
        )
        return lon.encode_lpdu(lon.Lpdu(out), crc=self.crc)


# -- device session -----------------------------------------------------------------------
ProcedureHandler = Callable[[bytes], Any]
_DEFAULT_IDENT = optical.IdentifyResponse()


class DeviceSession:
    """Device side: serves reads and writes on ``tables`` (id -> bytearray),
    runs procedures written to BT07 (``procedures``: proc id -> handler
    returning (result, data) or an iterator of those for slow procedures, one
    step per BT08 read), executes transactions, stores pending-table writes
    (``pending``: id -> (PED, offset, data)), checks sequence numbers."""

    def __init__(
        self,
        carrier: Any,
        suite: Optional[SecuritySuite] = None,
        *,
        tables: Optional[Dict[int, bytearray]] = None,
        read_only: Sequence[int] = (),
        procedures: Optional[Dict[int, ProcedureHandler]] = None,
        seq: int = 0,
        transaction_tables: T.TransactionTables = T.MEP_TABLES,
        groups: Sequence[int] = (),
        ident: optical.IdentifyResponse = _DEFAULT_IDENT,
    ) -> None:
        self.carrier = carrier
        self.suite: SecuritySuite = suite if suite is not None else NullSuite()
        self.services: ServiceProfile = carrier.services
        self.tables: Dict[int, bytearray] = tables if tables is not None else {}
        self.read_only = set(read_only)
        self.procedures = procedures or {}
        self.window = SequenceWindow(seq)
        self.tt = transaction_tables
        self.groups = tuple(groups)
        self.ident = ident
        self.pending: Dict[int, Tuple[PED, int, bytes]] = {}
        self.events: List[str] = []
        self._last_psn: Optional[int] = None
        self._proc_steps: Optional[Iterator[Tuple[int, bytes]]] = None
        self._proc_head = b""
        self._dups = T.DuplicateFilter()
        self.tables.setdefault(P.BT07, bytearray())
        self.tables.setdefault(P.BT08, bytearray(4))
        self.tables.setdefault(self.tt.request_table, bytearray(self.tt.request_size))
        self.tables.setdefault(self.tt.response_table, bytearray(self.tt.response_size))

    def receive_data(self, data: bytes) -> List[Event]:
        events: List[Event] = []
        try:
            tx, wires = self.carrier.receive(data)
        except DecodeError:
            return events
        if tx:
            events.append(Transmit(tx))
        for wire in wires:
            events += self._serve(wire)
        return events

    def _serve(self, wire: bytes) -> List[Event]:
        try:
            apdu, seq, ctx = self.suite.open_request(wire)
        except AuthenticationError:
            return self._reply(None, None, bytes([AUTH_FAILURE]))
        except SequenceError as exc:
            # raised by suites that number their own frames (AES): answer
            # 0x0C + current, protected like any response (MEP p.11, p.15)
            ctx = getattr(exc, "context", None)
            return self._reply(ctx, None, Response(ResponseCode.SEQ, seq=exc.current).encode())
        except DecodeError:
            return []
        if self.suite.request_overhead and not getattr(self.suite, "owns_sequence", False):
            try:
                self.window.accept(seq)
            except SequenceError:
                return self._reply(
                    ctx, None, Response(ResponseCode.SEQ, seq=self.window.current).encode()
                )
        psem = getattr(self.carrier, "psem", None)  # optical: C12.18 service states
        answered = psem.serve(apdu, self.ident) if psem is not None else None
        if answered is not None:
            return self._reply(ctx, *answered)
        try:
            req = decode_request(apdu, self.services)
        except DecodeError:
            return self._reply(ctx, None, bytes([ResponseCode.ERR]))
        resp = self.execute(req, self.services).encode(self.services)
        return self._reply(ctx, req, psem.fit(resp) if psem is not None else resp)

    def _reply(self, ctx: Any, req: Any, resp_apdu: bytes) -> List[Event]:
        frame = self.carrier.frame(self.suite.seal_response(ctx, resp_apdu))
        return [Transmit(frame), Served(req, resp_apdu)]

    # -- table services (also used for transaction records, without security)
    def execute(self, req: Any, profile: ServiceProfile) -> Response:
        t = req.table
        if isinstance(req, (FullRead, PartialRead)):
            if t == P.BT08 and self._proc_steps is not None:
                self._step_procedure()
            if t not in self.tables:
                return Response(ResponseCode.IAR)
            img = self.tables[t]
            if isinstance(req, FullRead):
                return Response(0, bytes(img))
            # beyond the table end: zeros, no error (Optical guide p.9)
            chunk = bytes(img[req.offset : req.offset + req.count])
            return Response(0, chunk + bytes(req.count - len(chunk)))
        # writes
        if t >= PENDING:
            if t - PENDING not in self.tables:
                return Response(ResponseCode.IAR)
            data = req.data
            if len(data) < 6:
                return Response(ResponseCode.IAR)
            ped = PED.decode(data[:6])
            off = getattr(req, "offset", 0)
            self.pending[t - PENDING] = (ped, off, data[6:])
            self.events.append(f"pending table {t - PENDING} written: {ped.describe()}")
            return Response(0)
        if t in self.read_only or t not in self.tables:
            return Response(ResponseCode.ISC if t in self.read_only else ResponseCode.IAR)
        if t == P.BT07:
            return self._procedure(req.data)
        img = self.tables[t]
        off = getattr(req, "offset", 0)
        if isinstance(req, FullWrite):
            img[: len(req.data)] = req.data
        else:
            if off + len(req.data) > len(img):
                return Response(ResponseCode.IAR)
            img[off : off + len(req.data)] = req.data
        if t == self.tt.request_table:
            self._maybe_transaction(off + len(req.data))
        return Response(0)

    def activate_pending(self, table: int) -> None:
        """BP12/BP13-style activation of a stored pending write."""
        ped, off, data = self.pending.pop(table)
        self.tables[table][off : off + len(data)] = data

    def _procedure(self, data: bytes) -> Response:
        self.tables[P.BT07] = bytearray(data)
        try:
            call = P.ProcedureCall.decode(data)
        except DecodeError:
            return Response(ResponseCode.ERR)
        if call.psn == self._last_psn:
            return Response(ResponseCode.ONP)  # repeated PSN (MEP p.52)
        self._last_psn = call.psn
        handler = self.procedures.get(call.proc_id)
        self._proc_head = call.proc_id.to_bytes(2, "little") + bytes([call.psn])
        if handler is None:
            result: Any = (6, b"")
        else:
            result = handler(call.params)
        if isinstance(result, tuple):
            self._proc_steps = None
            steps: Iterator[Tuple[int, bytes]] = iter([result])
        else:
            steps = iter(result)
        self._proc_steps = steps
        self._step_procedure()
        if call.selector == P.SELECT_NONE:
            self._proc_steps = None
        return Response(0)

    def _step_procedure(self) -> None:
        steps = self._proc_steps
        if steps is None:
            return
        try:
            res, data = next(steps)
        except StopIteration:
            self._proc_steps = None
            return
        if res != P.RESULT_ACCEPTED:
            self._proc_steps = None
        self.tables[P.BT08] = bytearray(self._proc_head + bytes([res]) + bytes(data))

    def _maybe_transaction(self, written_to: int) -> None:
        img = bytes(self.tables[self.tt.request_table])
        size = int.from_bytes(img[:2], "little")
        if size < 7 or written_to < size or size > len(img):
            return
        try:
            t = T.Transaction.decode(img[:size])
        except DecodeError:
            return  # trailing txn not (yet) matching: wait for the rest
        if self._dups.is_duplicate(img[:size]):
            return
        bare = ServiceProfile("bare", 0, 0, False, "transaction records")
        out: List[bytes] = []
        typ = T.RESPONSES
        if t.type == T.GROUP_REQUEST and not T.group_matches(t.groups, self.groups):
            typ = T.GROUP_DENIED
        else:
            for rec in t.records:
                try:
                    r = self.execute(decode_request(rec, bare), bare)
                except DecodeError:
                    r = Response(ResponseCode.ERR)
                out.append(r.encode(bare))
        resp = T.Transaction(t.txn, tuple(out), typ).encode()
        self.tables[self.tt.response_table][: len(resp)] = resp
