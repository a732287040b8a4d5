"""One router per shared medium: hand each frame to the one session that
waits for it.

On power line every node hears every frame.  The router is the concentrator's
receive side of one channel: it parses each frame's LonTalk header once (the
native batch parse, ``osgp._native.frames.lon_parse_batch``), keeps what is an
SPDU RESPONSE addressed to the concentrator's own subnet/node, and matches it
by source (subnet/node of the node the request went to: the device, or the
first repeater of a proxy chain) and 4-bit transaction number against the
exchanges outstanding.  Everything else is dropped and counted in ``drops`` by
reason:

``undecodable``       the header does not parse (CRC, lengths, version);
``not a response``    any other PDU (requests other nodes send, ACKs, ...);
``not for us``        a response to another node (another concentrator);
``duplicate``         the same response again after it was delivered;
``stale transaction`` from a node a session talks to, but no exchange waits for
                      that number (a late answer to an earlier, retried request);
``unsolicited``       from a node no session talks to.

The router also hands out the transaction numbers (ISO/IEC 14908-1 4-bit
numbers, never one still outstanding to the same neighbour), so two sessions
behind one repeater cannot wait for the same (source, number) pair; nor can a
session and a listening engine (topology discovery, commissioning) that takes
its numbers from the router (``use_tids``).
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from osgp import _backend
from osgp.errors import ConfigurationError
from osgp.link import lon
from osgp.link.carrier import PlcCarrier, TransactionsBusy, neighbour_key
from osgp.session.events import Event

__all__ = ["Router"]

_frames, _ = _backend.load("frames")

_RECENT = 4096  # delivered (source, transaction) pairs remembered for duplicates


class Router:
    """The receive side of one PLC channel for the node at ``own``
    (the concentrator's subnet/node).  ``crc``: frames carry the LPDU CRC
    (False for CN/IP payloads)."""

    def __init__(self, own: lon.SubnetNode, *, crc: bool = True) -> None:
        self.own = own
        self.crc = crc
        self.drops: Counter = Counter()
        self.delivered = 0
        self._sessions: Dict[int, Any] = {}  # id(carrier) -> session
        self._waiting: Dict[int, Any] = {}  # (source key << 4 | trans) -> session
        self._by_trans: Dict[int, Any] = {}  # trans -> session, for unknown sources
        self._recent: OrderedDict[int, bytes] = OrderedDict()
        self._known: Counter = Counter()  # source keys of the attached sessions
        self._listeners: Dict[int, List[Any]] = {}  # APDU code -> sessions (listen)
        self._own_subnet, self._own_node = own.subnet, own.node & 0x7F

    # -- sessions -----------------------------------------------------------------------
    def attach(self, session: Any) -> None:
        """Route for ``session`` (its carrier must be a PlcCarrier sending from
        this router's node); the router takes over its transaction numbers."""
        carrier = session.carrier
        if not isinstance(carrier, PlcCarrier):
            raise ConfigurationError("a router serves sessions on PLC carriers")
        if tuple(carrier.src) != (self.own.subnet, self.own.node):
            raise ConfigurationError(
                f"session sends from {carrier.src}, the router is {self.own.subnet}/{self.own.node}"
            )
        if carrier.crc != self.crc:
            raise ConfigurationError("the session and the router disagree on the LPDU CRC")
        if id(carrier) not in self._sessions and carrier.source_key is not None:
            self._known[carrier.source_key] += 1
        self._sessions[id(carrier)] = session
        carrier.tids = self._tid_allocator(session)

    def detach(self, session: Any) -> None:
        carrier = session.carrier
        if self._sessions.pop(id(carrier), None) is not None and carrier.source_key is not None:
            self._known[carrier.source_key] -= 1
            if self._known[carrier.source_key] <= 0:
                del self._known[carrier.source_key]
        self._release(session)

    def _release(self, session: Any) -> None:
        """Forget the transaction numbers ``session`` holds."""
        for table in (self._waiting, self._by_trans):
            for k in [k for k, s in table.items() if s is session]:
                del table[k]

    @property
    def sessions(self) -> List[Any]:
        return list(self._sessions.values())

    def _live(self, session: Any, key: int) -> bool:
        carrier = session.carrier  # an engine between exchanges has none
        exp = carrier.expected if carrier is not None else None
        return exp is not None and (
            (exp[0] << 4 | exp[1]) == key if exp[0] is not None else exp[1] == key
        )

    def _tid_allocator(self, session: Any) -> Any:
        def allocate(source: Optional[int], last: int) -> int:
            table, base = (self._by_trans, 0) if source is None else (self._waiting, source << 4)
            carrier = session.carrier
            old = carrier.expected if carrier is not None else None
            if old is not None:  # the session's previous exchange is over
                self._forget(session, old)
            for step in range(1, 17):
                trans = (last + step) & 0x0F
                other = table.get(base | trans)
                if other is None or other is session or not self._live(other, base | trans):
                    table[base | trans] = session
                    return trans
            raise TransactionsBusy("16 exchanges outstanding to one neighbour")

        return allocate

    def _forget(self, session: Any, expected: Tuple[Optional[int], int]) -> None:
        src, trans = expected
        table, key = (self._by_trans, trans) if src is None else (self._waiting, src << 4 | trans)
        if table.get(key) is session:
            del table[key]

    # -- receive ------------------------------------------------------------------------
    def route(self, frame: bytes) -> Optional[Any]:
        """The session waiting for ``frame``, or None (the drop is counted)."""
        try:
            h = _frames.lon_parse(frame, True, self.crc)
        except Exception:  # noqa: BLE001 - any parse failure is a counted drop
            self.drops["undecodable"] += 1
            return None
        hdr = h[11]
        to_us = h[2] == 2 and h[7] == self._own_subnet and h[8] & 0x7F == self._own_node
        response = h[1] == lon.PDU_SPDU and (hdr >> 4) & 7 == lon.SPDU_RESPONSE
        if not response:
            if to_us and h[1] == lon.PDU_APDU and self._listeners:
                s = self._listener(frame, h[14])
                if s is not None:
                    return s
            self.drops["not a response"] += 1
            return None
        if not to_us:
            self.drops["not for us"] += 1
            return None
        src, trans = neighbour_key(h[4], h[5]), hdr & 0x0F
        s = self._find(src, trans, frame)
        if s is None and self._listeners:
            s = self._listener(frame, h[14] + 1)
        if s is None:
            self._drop(src, trans, frame)
        return s

    # -- listeners ----------------------------------------------------------------------
    def listen(self, session: Any, codes: Iterable[int]) -> None:
        """Offer ``session`` the frames addressed to this node that no
        exchange waits for and whose APDU starts with one of ``codes``
        (unacknowledged APDUs, and responses to an engine that matches its
        own exchanges, such as topology discovery).  With several listeners
        on a code, the first whose ``claims(frame)`` is true takes it.  A
        listener with ``use_tids`` gets the router's transaction numbers, and
        the responses to its exchanges are matched as a session's are."""
        use_tids = getattr(session, "use_tids", None)
        if use_tids is not None:
            use_tids(self._tid_allocator(session))
        for c in codes:
            ls = self._listeners.setdefault(c, [])
            if session not in ls:
                ls.append(session)

    def unlisten(self, session: Any) -> None:
        for ls in self._listeners.values():
            if session in ls:
                ls.remove(session)
        self._release(session)

    def _listener(self, frame: bytes, start: int) -> Optional[Any]:
        ls = self._listeners.get(frame[start]) if start < len(frame) else None
        if not ls:
            return None
        s = next((x for x in ls if x.claims(frame)), None) if len(ls) > 1 else ls[0]
        if s is not None:
            self.delivered += 1
        return s

    def _find(self, src: int, trans: int, frame: bytes) -> Optional[Any]:
        key = src << 4 | trans
        s = self._waiting.get(key)
        if s is not None and self._live(s, key):
            del self._waiting[key]
        else:
            s = self._by_trans.get(trans)
            if s is None or not self._live(s, trans):
                return None
            del self._by_trans[trans]
        # delivered, and remembered to tell a duplicate of it later
        self.delivered += 1
        recent = self._recent
        recent[key] = frame
        recent.move_to_end(key)
        if len(recent) > _RECENT:
            recent.popitem(last=False)
        return s

    def _drop(self, src: int, trans: int, frame: bytes) -> None:
        if self._recent.get(src << 4 | trans) == frame:
            self.drops["duplicate"] += 1
        elif src in self._known:
            self.drops["stale transaction"] += 1
        else:
            self.drops["unsolicited"] += 1

    def _match(self, src: int, trans: int, frame: bytes) -> Optional[Any]:
        s = self._find(src, trans, frame)
        if s is None:
            self._drop(src, trans, frame)
        return s

    def route_batch(self, frames: Sequence[bytes]) -> List[Tuple[Any, bytes]]:
        """Route many frames at once: one native header parse for the batch,
        the filters as array operations, a dictionary look-up only for the
        frames addressed to us.  Returns (session, frame) pairs in order."""
        n = len(frames)
        if n == 0:
            return []
        lengths = np.fromiter(map(len, frames), dtype=np.int64, count=n)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return self.route_buffer(b"".join(frames), offsets, frames)

    def route_buffer(
        self, data: bytes, offsets: Any, frames: Optional[Sequence[bytes]] = None
    ) -> List[Tuple[Any, bytes]]:
        """:meth:`route_batch` over frames laid end to end in ``data``
        (frame i is ``data[offsets[i]:offsets[i+1]]``), as a capture holds them."""
        offsets = np.asarray(offsets, dtype=np.int64)
        status, h = _frames.lon_parse_batch(data, offsets, True, self.crc)
        ok = status == 0
        bad = int(np.count_nonzero(~ok))
        if bad:
            self.drops["undecodable"] += bad
        pdu_hdr = h["pdu_hdr"]
        response = ok & (h["pdu_fmt"] == lon.PDU_SPDU) & (((pdu_hdr >> 4) & 7) == lon.SPDU_RESPONSE)
        to_us = (
            response
            & (h["addr_fmt"] == 2)
            & (h["dest_subnet"] == self._own_subnet)
            & ((h["dest_node"] & 0x7F) == self._own_node)
        )
        n_resp = int(np.count_nonzero(response))
        n_us = int(np.count_nonzero(to_us))
        if int(np.count_nonzero(ok)) - n_resp:
            self.drops["not a response"] += int(np.count_nonzero(ok)) - n_resp
        if n_resp - n_us:
            self.drops["not for us"] += n_resp - n_us
        idx = np.flatnonzero(to_us)
        if not len(idx):
            return []
        src = (h["src_subnet"][idx].astype(np.int64) << 7) | (h["src_node"][idx] & 0x7F)
        trans = (pdu_hdr[idx] & 0x0F).astype(np.int64)
        out: List[Tuple[Any, bytes]] = []
        match = self._match
        if frames is None:
            starts, ends = offsets[idx].tolist(), offsets[idx + 1].tolist()
            for s_, t_, a, b in zip(src.tolist(), trans.tolist(), starts, ends):
                f = data[a:b]
                sess = match(s_, t_, f)
                if sess is not None:
                    out.append((sess, f))
        else:
            for i, s_, t_ in zip(idx.tolist(), src.tolist(), trans.tolist()):
                f = frames[i]
                sess = match(s_, t_, f)
                if sess is not None:
                    out.append((sess, f))
        return out

    def receive(self, frames: Iterable[bytes], now: Optional[float] = None) -> List[Event]:
        """Route frames and hand each to its session; returns their events."""
        events: List[Event] = []
        batch = frames if isinstance(frames, (list, tuple)) else list(frames)
        for session, frame in self.route_batch(batch):
            events += session.receive_data(frame, now)
        return events
