"""The concentrator side of one device: a sans-IO, handle-then-poll session.

Nothing here touches a port, a socket or a clock.  The caller

* hands over what arrived: ``receive_data(data, now)`` (returns events);
* asks for the next frame when the medium is free: ``poll_transmit(now)``;
* asks when to come back: ``next_deadline()``, and then calls
  ``handle_timeout(now)`` (returns events).

``now`` is any monotonic clock in seconds (asyncio's ``loop.time()`` or a
virtual clock).  Operations (``read``, ``write``, ``call``, ``transact``,
``exchange``) return an :class:`~osgp.session.events.Operation` handle at
once; they run one at a time, most urgent first (:class:`Priority`), and can be
cancelled.  Large reads and writes are split into partial operations of at
most the bundle's ``max_read`` / ``max_write`` bytes and reassembled.  A retry
after a timeout resends the identical frame (MEP guide p.21); a 0x0C response
resynchronises the sequence counter and resends the request once with the next
number (MEP guide p.11, p.15).

Nothing a peer sends raises out of ``receive_data``: a frame that does not
decode, is not for this session or arrives late is counted in ``drops``; a
frame that decodes but fails authentication fails the operation.
"""

from __future__ import annotations

import heapq
import logging
from collections import Counter
from typing import Any, Callable, Dict, Generator, List, Optional, Sequence, Tuple

from osgp.errors import (
    AuthenticationError,
    DecodeError,
    DeviceError,
    OSGPError,
    ProtocolError,
    ResponseTimeout,
    SequenceError,
)
from osgp.link.carrier import Alert, Carrier, ProxyFailed, TransactionsBusy
from osgp.security.legacy import SequenceCounter
from osgp.security.suite import AUTH_FAILURE, INVALID_SEQUENCE, NullSuite, SecuritySuite
from osgp.services import procedures as P
from osgp.services import transactions as T
from osgp.services.codes import ResponseCode
from osgp.services.messages import (
    FullRead,
    FullWrite,
    PartialRead,
    PartialWrite,
    Response,
    ServiceProfile,
    decode_response,
    response_data,
)
from osgp.session.events import (
    AlertReceived,
    Completed,
    Event,
    Failed,
    Operation,
    OperationCancelled,
    Priority,
    completed,
)
from osgp.session.profiles import LinkProfile, bundle_for

log = logging.getLogger("osgp.session")

__all__ = ["ClientSession"]

_BARE = ServiceProfile("bare", 0, 0, False, "transaction records")
_AUTH_FAILURE = bytes([AUTH_FAILURE])
_tuple_new = tuple.__new__
_SEAL = b"seal when sent"  # marks a pending frame that poll_transmit seals

# A one-exchange operation (a read or write that needs no split, a raw
# exchange) runs without a generator: its step is (kind, request), and the
# kind says what the generator it replaces would return from the response.
_FULL_READ, _PARTIAL_READ, _WRITE, _RAW = range(4)


class ClientSession:
    """Concentrator side of one device on one link.

    ``carrier``: the link (``osgp.link.carrier``); ``suite``: the security
    suite (None: none, as on the optical port); ``profile``: the link's bundle
    (default: the one matching carrier and suite).  ``state``: what
    :meth:`state` returned before a restart."""

    def __init__(
        self,
        carrier: Carrier,
        suite: Optional[SecuritySuite] = None,
        *,
        profile: Optional[LinkProfile] = None,
        seq: int = 0,
        retries: Optional[int] = None,
        max_polls: int = 10,
        psn: Optional[P.PsnAllocator] = None,
        state: Optional[Dict[str, Any]] = None,
    ) -> None:
        self.carrier = carrier
        self.suite: SecuritySuite = suite if suite is not None else NullSuite()
        self.profile = profile if profile is not None else bundle_for(carrier, suite)
        self.services: ServiceProfile = self.profile.services
        self.tables: T.TransactionTables = self.profile.transactions
        self.timers = self.profile.timers
        self.counter = SequenceCounter(seq)
        self.retries = self.timers.retries if retries is None else retries
        self.max_polls = max_polls
        self.psn = psn or P.PsnAllocator()
        self.drops: Counter = Counter()
        self._own_seq = bool(getattr(self.suite, "owns_sequence", False))
        self._timeout = self.timers.response_timeout(int(getattr(carrier, "hops", 0)))
        self._queue: List[Tuple[int, int, Operation]] = []
        self._order = 0
        self._op: Optional[Operation] = None
        self._msg: Any = None
        self._ctx: Any = None
        self._last: bytes = b""
        self._resynced = False
        self._tries = 0
        self._psn_known = False
        self._txn = 0
        self._outbox: List[bytes] = []  # frames to send at the next poll
        self._awaiting = False  # a request is out and its response timer runs
        self._deadline: Optional[float] = None
        self._last_tx: Optional[float] = None
        self._events: List[Event] = []
        self._watchers: List[Callable[[ClientSession], None]] = []
        if state is not None:
            self.restore(state)

    # -- public operations ------------------------------------------------------------
    def read(
        self,
        table: int,
        offset: Optional[int] = None,
        count: Optional[int] = None,
        *,
        priority: int = Priority.ON_DEMAND,
    ) -> Operation:
        if offset is None and count is None:
            step: Any = (_FULL_READ, FullRead(table))
        elif count is not None and count <= self.services.max_read:
            # tuple.__new__ as NamedTuple._make uses it, without its Python frame
            step = (_PARTIAL_READ, _tuple_new(PartialRead, (table, offset or 0, count)))
        else:
            step = self._read(table, offset, count)
        return self._submit(f"read {table}", step, priority)

    def write(
        self,
        table: int,
        data: bytes,
        offset: Optional[int] = None,
        *,
        priority: int = Priority.OPERATION,
    ) -> Operation:
        data = bytes(data)
        if len(data) > self.services.max_write:
            step: Any = self._write(table, data, offset)
        elif offset is None:
            step = (_WRITE, FullWrite(table, data))
        else:
            step = (_WRITE, PartialWrite(table, offset, data))
        return self._submit(f"write {table}", step, priority)

    def call(
        self,
        number: int,
        params: bytes = b"",
        *,
        mfg: bool = False,
        selector: int = P.SELECT_ON_COMPLETION,
        priority: int = Priority.OPERATION,
    ) -> Operation:
        return self._submit(
            f"procedure {number}", self._call(number, bytes(params), mfg, selector), priority
        )

    def transact(
        self,
        requests: Sequence[Any],
        *,
        txn: Optional[int] = None,
        groups: Sequence[int] = (),
        priority: int = Priority.OPERATION,
    ) -> Operation:
        return self._submit(
            "transaction", self._transact(list(requests), txn, tuple(groups)), priority
        )

    def exchange(self, message: Any, *, priority: int = Priority.ON_DEMAND) -> Operation:
        """One raw exchange: returns the response APDU undecoded."""
        return self._submit("exchange", (_RAW, message), priority)

    # -- handle-then-poll interface -----------------------------------------------------
    def watch(self, callback: Callable[[ClientSession], None]) -> None:
        """Call ``callback(session)`` whenever what the session wants to send
        or its next deadline may have changed (an arbiter's hook)."""
        self._watchers.append(callback)

    def unwatch(self, callback: Callable[[ClientSession], None]) -> None:
        if callback in self._watchers:
            self._watchers.remove(callback)

    def _changed(self) -> None:
        for w in self._watchers:
            w(self)

    @property
    def busy(self) -> bool:
        """An operation is in flight."""
        return self._op is not None

    @property
    def awaiting(self) -> bool:
        """A request is out and its response has not arrived yet."""
        return self._awaiting

    @property
    def pending(self) -> int:
        """Operations queued or in flight."""
        return len(self._queue) + (self._op is not None)

    def next_priority(self) -> Optional[int]:
        """Priority of what this session would send next (None: nothing)."""
        if self._outbox:
            return -1  # link-level frames (ACKs, retries) go before any new request
        if self._op is not None:
            return None if self._awaiting else self._op.priority
        return self._queue[0][0] if self._queue else None

    def ready_at(self) -> Optional[float]:
        """Earliest time a new request may go out (request gap of the link)."""
        if self._last_tx is None or not self.timers.request_gap_ms:
            return None
        return self._last_tx + self.timers.request_gap_ms / 1000.0

    def poll_transmit(self, now: float = 0.0) -> Optional[bytes]:
        """The next frame to put on the medium, or None.  Arms the response
        timer of a request it returns."""
        if self._outbox:
            frame = self._outbox.pop(0)
            if self._watchers:
                self._changed()
            return frame
        if self._op is None:
            if not self._queue:
                return None
            last_tx = self._last_tx
            if last_tx is not None:
                gap_ms = self.timers.request_gap_ms
                if gap_ms and now < last_tx + gap_ms / 1000.0:  # ready_at, inlined
                    return None
            self._op = heapq.heappop(self._queue)[2]  # _start_next's first turn, inlined
            self._advance(None)
            if self._op is None:
                self._start_next()
        elif self._awaiting or self._msg is None:
            return None
        pending = self._pending_frame
        if pending is None:
            return None
        self._pending_frame = None
        if pending is _SEAL:
            # sealed as it goes out, so the transaction number (and the
            # sequence number) is taken only when the medium is ours
            last = self.counter.last
            try:
                pending = self._seal()
            except TransactionsBusy:
                self.counter.last = last  # not sent: the number is not used
                self._pending_frame = _SEAL
                return None
            except OSGPError as exc:
                self._msg = None
                self._advance(None, exc)
                if self._watchers:
                    self._changed()
                return None
        # the response timer starts with the frame
        self._awaiting = True
        self._last_tx = now
        self._deadline = now + self._timeout
        if self._watchers:
            self._changed()
        return pending

    def next_deadline(self) -> Optional[float]:
        """When :meth:`handle_timeout` (or :meth:`poll_transmit`) must be
        called next; None when nothing is timed."""
        if self._awaiting:
            return self._deadline
        if self._op is None and self._queue:
            return self.ready_at()
        return None

    def handle_timeout(self, now: float) -> List[Event]:
        """Fire the response timer if it has expired: queue a resend of the
        identical frame, or fail the operation after the last retry."""
        if not self._awaiting or self._deadline is None or now < self._deadline:
            return self._take_events()
        op = self._op
        assert op is not None  # noqa: S101 - internal invariant, not input
        self._awaiting = False
        self._deadline = None
        self.carrier.reset()
        if self._tries >= self.retries:
            self._give_up()
            self._advance(
                None, ResponseTimeout(f"{op.name}: no response after {self._tries} retries")
            )
            return self._take_events()
        op.retries += 1
        self._tries += 1
        try:
            frame = self.carrier.retransmit(self._last)
        except ResponseTimeout as exc:
            self._give_up()
            self._advance(None, exc)
            return self._take_events()
        self._resend(frame)
        return self._take_events()

    def receive_data(self, data: bytes, now: Optional[float] = None) -> List[Event]:
        """Hand over received bytes; returns the events they caused."""
        try:
            tx, items = self.carrier.receive(data)
        except DecodeError as exc:
            self.drops["undecodable"] += 1
            log.debug("dropped undecodable bytes: %s", exc)
            return self._take_events()
        except OSGPError as exc:  # a peer's bytes must never raise out of here
            self.drops["rejected by the link"] += 1
            log.debug("dropped frame: %s", exc)
            return self._take_events()
        if tx:
            self._outbox.append(tx)
        for item in items:
            self._item(item)
        ev, self._events = self._events, []  # _take_events, inlined
        if self._watchers:
            self._changed()
        return ev

    # -- state ------------------------------------------------------------------------------
    def state(self) -> Dict[str, Any]:
        """Sequence counter, PSN and transaction numbers, the link's
        transaction number and the suite's state, as plain data.  An AES
        suite's state holds its key: store it as a secret."""
        out: Dict[str, Any] = {
            "profile": self.profile.name,
            "seq": self.counter.state(),
            "psn": self.psn.last,
            "txn": self._txn,
        }
        trans = getattr(self.carrier, "_trans", None)
        if trans is not None:
            out["trans"] = trans
        suite_state = getattr(self.suite, "state", None)
        if suite_state is not None:
            out["suite"] = suite_state()
        return out

    def restore(self, state: Dict[str, Any]) -> None:
        """Continue from :meth:`state` (before any operation is started)."""
        if self._op is not None:
            raise ProtocolError("restore a session before it starts an operation")
        if state.get("profile", self.profile.name) != self.profile.name:
            raise ProtocolError(
                f"state of a {state['profile']} session, this one is {self.profile.name}"
            )
        self.counter = SequenceCounter.from_state(state["seq"])
        self.psn.last = state.get("psn")
        # a call may have gone out after this state was saved: the device's
        # last PSN is not known for sure until a call succeeds
        self._psn_known = False
        self._txn = int(state.get("txn", 0))
        if "trans" in state and hasattr(self.carrier, "_trans"):
            self.carrier._trans = int(state["trans"])
        if "suite" in state:
            self.suite.restore(state["suite"])  # type: ignore[attr-defined]

    # -- engine -----------------------------------------------------------------------------
    _pending_frame: Optional[bytes] = None

    def _submit(self, name: str, gen: Any, priority: int) -> Operation:
        self._order += 1
        op = Operation(name, gen, priority, self._order, self)
        heapq.heappush(self._queue, (op.priority, op.order, op))
        if self._watchers:
            self._changed()
        return op

    def _cancelled(self, op: Operation) -> None:
        if op is self._op:
            return  # ends after the exchange in flight (see _advance)
        self._queue = [e for e in self._queue if e[2] is not op]
        heapq.heapify(self._queue)
        self._finish(Failed(op, OperationCancelled(f"{op.name}: cancelled")))
        self._changed()

    def _start_next(self) -> None:
        while self._queue and self._op is None:
            _, _, op = heapq.heappop(self._queue)
            self._op = op
            self._advance(None)

    @property
    def has_events(self) -> bool:
        """Events wait for :meth:`take_events` (an operation that failed as
        :meth:`poll_transmit` started it)."""
        return bool(self._events)

    def take_events(self) -> List[Event]:
        """The events not yet returned by ``receive_data`` / ``handle_timeout``."""
        return self._take_events()

    def _take_events(self) -> List[Event]:
        ev, self._events = self._events, []
        if self._watchers:
            self._changed()
        return ev

    def _advance(self, value: Optional[bytes], error: Optional[OSGPError] = None) -> None:
        op = self._op
        assert op is not None  # noqa: S101 - internal invariant, not input
        if op.cancelled and error is None:
            error = OperationCancelled(f"{op.name}: cancelled")
        step = op._gen
        if type(step) is tuple:
            if error is not None:
                self._finish(Failed(op, error))
                return
            if self._msg is not None:  # the request went out: this is its response
                try:
                    result = self._exchange_result(step[0], step[1], value)
                except OSGPError as exc:
                    self._finish(Failed(op, exc))
                    return
                # _finish of a Completed event for the operation in flight, inlined
                op.done = True
                op.result = result
                self._op = self._msg = self._pending_frame = None
                self._events.append(completed(op, result))
                return
            msg = step[1]
        else:
            try:
                msg = step.throw(error) if error is not None else step.send(value)
            except StopIteration as stop:
                self._finish(completed(op, stop.value))
                return
            except OSGPError as exc:
                self._finish(Failed(op, exc))
                return
        self._msg = msg
        self._resynced = False
        self._tries = 0  # retries are counted per exchange
        self._pending_frame = _SEAL

    def _finish(self, ev: Any) -> None:
        op = ev.op
        op.done = True
        if isinstance(ev, Completed):
            op.result = ev.result
        else:
            op.error = ev.error
        if op is self._op:
            self._op = None
            self._msg = None
            self._pending_frame = None
        self._events.append(ev)

    def _seal(self) -> bytes:
        apdu = self._msg.encode(self.services)
        seq = self.counter.next() if self.suite.request_overhead and not self._own_seq else 0
        wire, self._ctx = self.suite.seal_request(apdu, seq)
        frame = self.carrier.frame(wire)
        assert self._op is not None  # noqa: S101
        self._op.exchanges += 1
        self._last = frame
        return frame

    def _resend(self, frame: bytes) -> None:
        """Queue a frame that answers the exchange in flight (retry or resync)."""
        self._pending_frame = frame

    def _give_up(self) -> None:
        give_up = getattr(self.carrier, "give_up", None)
        if give_up is not None:
            give_up()

    def _link_item(self, item: Any) -> None:
        """What the link itself reported during an exchange: an alert, or a
        failure (a proxy chain's 0x4C)."""
        if isinstance(item, Alert):
            self._events.append(AlertReceived())
            return
        self._awaiting = False
        self._deadline = None
        self._pending_frame = None
        op = self._op
        assert op is not None  # noqa: S101 - checked by the caller
        if isinstance(item, ProxyFailed) and self._tries < self.retries:
            # a proxy chain that failed this time (0x4C) costs one try, as a
            # timeout does; the new try is a new transaction (a repeater
            # answers a repeated one from its cache)
            op.retries += 1
            self._tries += 1
            self.drops["proxy failure retried"] += 1
            self._resend(_SEAL)
            return
        self._advance(None, item)

    def _item(self, item: Any) -> None:
        if self._op is None or self._msg is None or not self._last:
            if isinstance(item, Alert):
                self._events.append(AlertReceived())
            else:
                self.drops["unsolicited"] += 1
            return
        if type(item) is not bytes:
            self._link_item(item)
            return
        # the answer to the exchange in flight, also when it comes after the
        # response timer fired and before the identical retry went out
        self._awaiting = False
        self._deadline = None
        self._pending_frame = None
        try:
            apdu = self.suite.open_response(self._ctx, item)
        except SequenceError as exc:
            # a replayed or stale response (suites that number their own
            # frames): drop it and keep waiting for the retry timer
            self.drops["stale sequence number"] += 1
            self._awaiting = True
            self._deadline = (self._last_tx or 0.0) + self._timeout
            log.debug("dropped response: %s", exc)
            return
        except OSGPError as exc:  # a bad digest or tag, a malformed envelope
            self._advance(None, exc)
            return
        if (
            self.suite.request_overhead
            and len(apdu) == 5
            and apdu[0] == INVALID_SEQUENCE
            and not self._resynced
        ):
            # MEP guide p.11, p.15: adopt the device's number, resend with +1
            current = int.from_bytes(apdu[1:5], "big")
            if self._own_seq:
                self.suite.resync(current)  # type: ignore[attr-defined]
            else:
                self.counter.resync(current)
            self._resynced = True
            self._resend(_SEAL)
            return
        self._advance(apdu)

    # -- operation generators ---------------------------------------------------------------
    def _exchange_result(self, kind: int, request: Any, apdu: Any) -> Any:
        """What the generator a one-exchange operation replaces returns."""
        if kind == _RAW:
            return apdu
        if apdu[:1] == _AUTH_FAILURE:
            raise AuthenticationError("device reported authentication failure (0x0B)")
        data = response_data(apdu, request, self.services)
        if kind == _WRITE:
            return None
        if kind == _PARTIAL_READ and len(data or b"") != request.count:
            raise ProtocolError(
                f"asked for {request.count} bytes of table {request.table}, got {len(data or b'')}"
            )
        return bytes(data) if data else b""

    def _response(self, apdu: bytes, request: Any) -> Optional[bytes]:
        if apdu[:1] == _AUTH_FAILURE:
            raise AuthenticationError("device reported authentication failure (0x0B)")
        return response_data(apdu, request, self.services)

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
        fresh = not self._psn_known  # what the device saw last is unknown
        call = P.ProcedureCall(number, self.psn.next(), params, mfg, selector)
        try:
            yield from self._write(P.BT07, call.encode(), None)
        except DeviceError as exc:
            # a device refuses a PSN equal to the one it executed last (MEP
            # guide p.52); a session that starts afresh may pick that one
            if not fresh or exc.code != ResponseCode.ONP:
                raise
            call = P.ProcedureCall(number, self.psn.next(), params, mfg, selector)
            yield from self._write(P.BT07, call.encode(), None)
        self._psn_known = True
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
        t = T.Transaction(
            txn,
            tuple(r.encode(_BARE) for r in requests),
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
        return [decode_response(r, q, _BARE) for r, q in zip(rt.records, requests)]
