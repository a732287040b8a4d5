"""The device side of one link: a sans-IO session that serves tables,
procedures and transactions.

Handle, then poll, as the client: ``receive_data(data, now)`` returns
:class:`~osgp.session.events.Served` events, the frames to send come from
``poll_transmit(now)``.  Nothing a peer sends raises out of ``receive_data``:
a frame that does not decode is counted in ``drops``; a request that fails
authentication is answered 0x0B, a bad sequence number 0x0C with the current
value (MEP guide p.10-11, p.15), a request that does not decode 0x01.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from osgp.errors import (
    AuthenticationError,
    ConfigurationError,
    DecodeError,
    MalformedError,
    OSGPError,
    ProtocolError,
    SequenceError,
)
from osgp.link import optical
from osgp.link.carrier import DeviceCarrier
from osgp.security.legacy import SequenceWindow
from osgp.security.suite import AUTH_FAILURE, NullSuite, SecuritySuite
from osgp.services import procedures as P
from osgp.services import transactions as T
from osgp.services.codes import ResponseCode
from osgp.services.messages import (
    PED,
    PENDING,
    FullRead,
    FullWrite,
    PartialRead,
    Response,
    ServiceProfile,
    decode_request,
)
from osgp.session.events import Event, Served
from osgp.session.profiles import LinkProfile, bundle_for

__all__ = ["DeviceSession", "ProcedureHandler"]

_BARE = ServiceProfile("bare", 0, 0, False, "transaction records")


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
        carrier: DeviceCarrier,
        suite: Optional[SecuritySuite] = None,
        *,
        profile: Optional[LinkProfile] = None,
        tables: Optional[Dict[int, bytearray]] = None,
        read_only: Sequence[int] = (),
        procedures: Optional[Dict[int, ProcedureHandler]] = None,
        seq: int = 0,
        groups: Sequence[int] = (),
        ident: optical.IdentifyResponse = _DEFAULT_IDENT,
        state: Optional[Dict[str, Any]] = None,
    ) -> None:
        self.carrier = carrier
        self.suite: SecuritySuite = suite if suite is not None else NullSuite()
        self.profile = profile if profile is not None else bundle_for(carrier, suite)
        self.services: ServiceProfile = self.profile.services
        self.drops: Counter = Counter()
        self._outbox: List[bytes] = []
        self._silence = getattr(carrier, "silence", None)  # the inter-byte rule, if any
        self._rx_at: Optional[float] = None
        self.tables: Dict[int, bytearray] = tables if tables is not None else {}
        self.read_only = set(read_only)
        self.procedures = procedures or {}
        self.window = SequenceWindow(seq)
        self.tt = self.profile.transactions
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
        if state is not None:
            self.restore(state)

    def receive_data(self, data: bytes, now: Optional[float] = None) -> List[Event]:
        """Hand over received bytes; returns what was served.  With ``now``,
        a partial frame older than the link's inter-byte timeout is dropped
        first, as a device's receiver does."""
        events: List[Event] = []
        if now is not None:
            if self._rx_at is not None and self._silence is not None:
                self._silence(now - self._rx_at)
            self._rx_at = now
        try:
            tx, wires = self.carrier.receive(data)
        except DecodeError:
            self.drops["undecodable"] += 1
            return events
        except OSGPError:
            self.drops["rejected by the link"] += 1
            return events
        if tx:
            self._outbox.append(tx)
        for wire in wires:
            try:
                events += self._serve(wire)
            except OSGPError as exc:  # e.g. a response the link cannot carry
                self.drops[f"not answered: {type(exc).__name__}"] += 1
        return events

    def poll_transmit(self, now: float = 0.0) -> Optional[bytes]:
        """The next frame to send, or None."""
        return self._outbox.pop(0) if self._outbox else None

    def next_deadline(self) -> Optional[float]:
        return None

    # -- state
    def state(self) -> Dict[str, Any]:
        """Sequence window, last procedure sequence number and the suite's
        state as plain data (an AES suite's state holds its key)."""
        out: Dict[str, Any] = {
            "profile": self.profile.name,
            "window": self.window.state(),
            "psn": self._last_psn,
        }
        suite_state = getattr(self.suite, "state", None)
        if suite_state is not None:
            out["suite"] = suite_state()
        return out

    def restore(self, state: Dict[str, Any]) -> None:
        if state.get("profile", self.profile.name) != self.profile.name:
            raise ProtocolError(
                f"state of a {state['profile']} session, this one is {self.profile.name}"
            )
        self.window = SequenceWindow.from_state(state["window"])
        self._last_psn = state.get("psn")
        if "suite" in state:
            self.suite.restore(state["suite"])  # type: ignore[attr-defined]

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
        psem = getattr(self.carrier, "psem", None)  # C12.18 service states
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
        try:
            frame = self.carrier.frame(self.suite.seal_response(ctx, resp_apdu))
        except (ConfigurationError, MalformedError):
            # a response the link cannot carry (a full read of a table larger
            # than the message cap) is refused with "operation not possible",
            # as the optical port refuses one that exceeds its grant; INFERRED
            self.drops["response too large for the link"] += 1
            resp_apdu = bytes([ResponseCode.ONP])
            frame = self.carrier.frame(self.suite.seal_response(ctx, resp_apdu))
        self._outbox.append(frame)
        return [Served(req, resp_apdu)]

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
        bare = _BARE
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
