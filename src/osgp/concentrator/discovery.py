"""Topology discovery on one power-line segment (reconstructed ATM/ADD,
INFERRED; osgp.services.atm, docs/discovery.md).

:class:`Discovery` is a sans-IO engine driven like a session
(``receive_data``, ``poll_transmit``, ``next_deadline``, ``handle_timeout``,
``watch``), on the simulated network (``Segment.attach_engine``) or a real
loop.  It follows the design of US 2006/0085346, US 8,700,754 and
US 9,755,906 (G. M. Riley):

1. rounds of DISCOVER broadcasts, each to a range of hashed Neuron IDs: the
   range adapts (halved when a round's answers fill half its slots, doubled
   after a quiet round), a range is repeated with the found nodes'
   acknowledgement tags until a round brings nothing new;
2. a node becomes level 1 when both directions' margins (the request as it
   heard it, its answer as the concentrator heard it) reach
   ``min_margin_db``;
3. level by level, the level's nodes are tried as proxies, weakest
   acceptable link first (the one farthest out): each gets its subnet/node
   (ISO/IEC 14908-1 Update Domain), is told to run the same rounds onward
   (PROXY_DISCOVER through its Annex G chain) and reports what it heard
   (REPORT pages); a node first heard well from a level-k proxy is level
   k + 1 behind it.  Proxies of a level are tried until one brings no new
   node;
4. after the levels, each source (the concentrator, then the proxies,
   nearest first) sweeps again with every node it heard or that is routed
   within its level + 1 acknowledged: a node whose answers were all lost
   in a nearer source's sweep gets the shorter route;
5. a node heard only below the margin takes its best link.

The result is a :class:`Topology`: per meter its best path (repeaters'
Neuron IDs and addresses), alternates, signal figures and hop count, and the
links heard; plain dicts both ways.  :func:`reevaluate` compares two
discoveries and lists the re-routes (a meter that moved to another
transformer, a lost meter, a changed path).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Generator, Iterable, List, Optional, Sequence, Tuple

from osgp import _backend
from osgp.errors import DATA_DEFECTS, ConfigurationError, OSGPError, data_defect
from osgp.link import lon, lon_proxy
from osgp.link.carrier import PlcCarrier, ProxyFailed
from osgp.services import atm
from osgp.session.events import Event, Priority, Watched
from osgp.session.profiles import PLC

log = logging.getLogger("osgp.concentrator")

__all__ = [
    "AddressPlan",
    "Engine",
    "Request",
    "Round",
    "Wait",
    "Discovery",
    "Link",
    "MeterRoute",
    "Topology",
    "Reroute",
    "reevaluate",
]

_frames, _ = _backend.load("frames")
_PROXY_CODES = (lon_proxy.PROXY, lon_proxy.PROXY_FAIL)


class AddressPlan:
    """Subnet/node numbers for the meters of one segment: node numbers
    1..127 in ``subnets`` in the order asked for, skipping ``reserved``
    (the concentrator).  The same Neuron ID always gets the same address, so
    discovery (which addresses the proxies it needs) and commissioning agree."""

    def __init__(self, subnets: Iterable[int], *, reserved: Iterable[lon.SubnetNode] = ()) -> None:
        self.subnets = list(subnets)
        if not self.subnets or any(not 1 <= s <= 255 for s in self.subnets):
            raise ConfigurationError("address plan: subnets 1..255")
        self.reserved = set(reserved)
        self.assigned: Dict[bytes, lon.SubnetNode] = {}
        self._free = (
            lon.SubnetNode(s, n)
            for s in self.subnets
            for n in range(1, 128)
            if lon.SubnetNode(s, n) not in self.reserved
        )

    def address(self, nid: bytes) -> lon.SubnetNode:
        a = self.assigned.get(bytes(nid))
        if a is None:
            a = next(self._free, None)
            if a is None:
                raise ConfigurationError(f"address plan: no node number left for {nid.hex()}")
            self.assigned[bytes(nid)] = a
        return a


# -- results --------------------------------------------------------------------------
@dataclass(frozen=True)
class Link:
    """One link heard: ``source`` (None: the concentrator) sent, ``nid``
    answered.  ``ssi_out``/``margin_out``: the request at the node;
    ``ssi_in``/``margin_in``: the answer at the source (None: not measured)."""

    source: Optional[bytes]
    nid: bytes
    ssi_out: float
    margin_out: float
    ssi_in: Optional[float]
    margin_in: Optional[float]

    @property
    def margin(self) -> float:
        """The weaker direction's margin."""
        return self.margin_out if self.margin_in is None else min(self.margin_out, self.margin_in)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "source": None if self.source is None else self.source.hex(),
            "nid": self.nid.hex(),
            "ssi_out": self.ssi_out,
            "margin_out": self.margin_out,
            "ssi_in": self.ssi_in,
            "margin_in": self.margin_in,
        }

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> Link:
        src = d["source"]
        return cls(
            None if src is None else bytes.fromhex(src),
            bytes.fromhex(d["nid"]),
            d["ssi_out"],
            d["margin_out"],
            d["ssi_in"],
            d["margin_in"],
        )


@dataclass
class MeterRoute:
    """A meter's place in the topology: ``path`` lists its repeaters'
    Neuron IDs from the concentrator outwards (empty: direct), ``addresses``
    their subnet/nodes; ``alternates``: other usable paths; ``ssi`` and
    ``margin`` of the last hop (weaker direction); ``hops`` = len(path) + 1."""

    nid: bytes
    serial: str
    segment: str
    path: List[bytes]
    addresses: List[lon.SubnetNode]
    alternates: List[List[bytes]]
    ssi: float
    margin: float
    hops: int
    configured: bool = False

    def to_dict(self) -> Dict[str, Any]:
        return {
            "nid": self.nid.hex(),
            "serial": self.serial,
            "segment": self.segment,
            "path": [p.hex() for p in self.path],
            "addresses": [[a.subnet, a.node] for a in self.addresses],
            "alternates": [[p.hex() for p in alt] for alt in self.alternates],
            "ssi": self.ssi,
            "margin": self.margin,
            "hops": self.hops,
            "configured": self.configured,
        }

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> MeterRoute:
        return cls(
            bytes.fromhex(d["nid"]),
            d["serial"],
            d["segment"],
            [bytes.fromhex(p) for p in d["path"]],
            [lon.SubnetNode(s, n) for s, n in d["addresses"]],
            [[bytes.fromhex(p) for p in alt] for alt in d["alternates"]],
            d["ssi"],
            d["margin"],
            d["hops"],
            d.get("configured", False),
        )


@dataclass
class Topology:
    """What a discovery found on one segment."""

    segment: str
    concentrator: lon.SubnetNode
    meters: Dict[bytes, MeterRoute] = field(default_factory=dict)
    links: List[Link] = field(default_factory=list)
    proxies: Dict[bytes, lon.SubnetNode] = field(default_factory=dict)  # addressed repeaters

    def route(self, nid: bytes) -> MeterRoute:
        try:
            return self.meters[bytes(nid)]
        except KeyError:
            raise ConfigurationError(f"{bytes(nid).hex()} is not in the topology") from None

    def to_dict(self) -> Dict[str, Any]:
        return {
            "segment": self.segment,
            "concentrator": [self.concentrator.subnet, self.concentrator.node],
            "meters": [m.to_dict() for m in self.meters.values()],
            "links": [lk.to_dict() for lk in self.links],
            "proxies": {k.hex(): [a.subnet, a.node] for k, a in self.proxies.items()},
        }

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> Topology:
        t = cls(d["segment"], lon.SubnetNode(*d["concentrator"]))
        for m in d["meters"]:
            r = MeterRoute.from_dict(m)
            t.meters[r.nid] = r
        t.links = [Link.from_dict(x) for x in d["links"]]
        t.proxies = {bytes.fromhex(k): lon.SubnetNode(*a) for k, a in d["proxies"].items()}
        return t


@dataclass(frozen=True)
class Reroute:
    """A change between two discoveries: ``reason`` is ``"moved"`` (now on
    ``new_segment``), ``"lost"`` (answers nowhere) or ``"path"`` (same
    segment, another best path)."""

    nid: bytes
    reason: str
    old_segment: str
    new_segment: Optional[str]
    old_path: List[bytes]
    new_path: Optional[List[bytes]]


def reevaluate(old: Iterable[Topology], new: Iterable[Topology]) -> List[Reroute]:
    """The re-routes from the topologies of a previous discovery to those
    of a fresh one (each an iterable of per-segment topologies)."""
    now: Dict[bytes, MeterRoute] = {}
    for t in new:
        now.update(t.meters)
    out: List[Reroute] = []
    for t in old:
        for nid, r in t.meters.items():
            n = now.get(nid)
            if n is None:
                out.append(Reroute(nid, "lost", t.segment, None, r.path, None))
            elif n.segment != t.segment:
                out.append(Reroute(nid, "moved", t.segment, n.segment, r.path, n.path))
            elif n.path != r.path:
                out.append(Reroute(nid, "path", t.segment, n.segment, r.path, n.path))
    return out


# -- the engine core ----------------------------------------------------------------
@dataclass
class Request:
    """Send ``apdu`` to ``dest`` through ``path``; resume with the response
    APDU, a ProxyFailed or None (no answer after the retries)."""

    dest: lon.Address
    path: Sequence[lon.SubnetNode]
    apdu: bytes


@dataclass
class Round:
    """Broadcast ``apdu`` (unacknowledged) and collect REPLYs of ``session``
    for ``window_s``; resume with the links heard."""

    apdu: bytes
    session: int
    window_s: float


@dataclass
class Wait:
    seconds: float


Command = Any


class Engine(Watched):
    """The sans-IO driving of a sequence of exchanges written as a generator
    (``_run`` yields :class:`Request`, :class:`Round`, :class:`Wait`):
    one frame at a time, retries of the identical frame, timers from the PLC
    bundle (response timer per try plus the Annex G per-hop additions).

    ``frame_s``: what one frame takes on the medium, added to every timer;
    ``priority``: the arbiter's order for this engine's frames."""

    measures_signal = True  # receive_data takes the modem's ssi/margin
    listens: Tuple[int, ...] = ()

    def __init__(
        self,
        own: lon.SubnetNode,
        *,
        frame_s: float = 0.3,
        priority: Priority = Priority.OPERATION,
        retries: Optional[int] = None,
    ) -> None:
        self.own = own
        self.frame_s = frame_s
        self.priority = int(priority)
        self.retries = PLC.timers.retries if retries is None else retries
        self.drops: Counter = Counter()
        self.stats: Counter = Counter()
        self.done = False
        self.started_at: Optional[float] = None
        self.finished_at: Optional[float] = None
        Watched.__init__(self)
        self._gen: Optional[Generator[Command, Any, None]] = None
        self._cmd: Command = None
        self._out: Optional[bytes] = None
        self._frame = b""
        self._deadline: Optional[float] = None
        self._tries = 0
        self._carrier: Optional[PlcCarrier] = None
        self._heard: List[Link] = []
        self._tid = 0
        # where transaction numbers come from: the channel's router (use_tids),
        # else the engine's own counter
        self._lent_tids: Optional[Callable[[Optional[int], int], int]] = None
        self._now = 0.0
        self._replies: Dict[bytes, atm.Reply] = {}  # the latest answer of each node

    # -- session-like interface -------------------------------------------------------
    # The engine is its own operation handle (``done``, ``result``, ``error``,
    # ``name``), so osgp.transport.driver's run_until_complete and its asyncio
    # twin drive it over a real link.
    name = "topology engine"
    error: Optional[OSGPError] = None

    @property
    def result(self) -> Any:
        return None

    @property
    def awaiting(self) -> bool:
        return self._cmd is not None and self._out is None and self._deadline is not None

    def next_priority(self) -> Optional[int]:
        if self._gen is None and not self.done:
            return self.priority  # not started: start on the first poll
        return self.priority if self._out is not None else None

    def next_deadline(self) -> Optional[float]:
        return self._deadline

    def poll_transmit(self, now: float) -> Optional[bytes]:
        self._now = now
        if self._gen is None and not self.done:
            self.started_at = now
            self._gen = self._run()
            self._advance(None)
        if self._out is None:
            return None
        out, self._out = self._out, None
        cmd = self._cmd
        if isinstance(cmd, Request):
            wait = PLC.timers.response_timeout(len(cmd.path)) + 2 * self.frame_s
        else:
            wait = cmd.window_s + 2 * self.frame_s
        self._deadline = now + wait
        self.stats["frames"] += 1
        self._changed()
        return out

    def handle_timeout(self, now: float) -> List[Event]:
        self._now = now
        if self._deadline is None or now < self._deadline:
            return []
        self._deadline = None
        cmd = self._cmd
        if isinstance(cmd, Request) and self._tries < self.retries:
            self._tries += 1
            self.stats["retries"] += 1
            self._out = self._frame  # the identical frame (same transaction number)
            self._changed()
        elif isinstance(cmd, Request):
            self.stats["no answer"] += 1
            self._resume(None)
        elif isinstance(cmd, Round):
            self._resume(self._heard)
        else:
            self._resume(None)
        return []

    def claims(self, frame: bytes) -> bool:
        """Whether ``frame`` is for this engine (a router with several
        listeners on a code asks)."""
        try:
            h = _frames.lon_parse(frame, True, True)
        except OSGPError:
            return False
        if h[1] == lon.PDU_APDU:
            return isinstance(self._cmd, Round)
        c = self._carrier
        return (
            c is not None
            and c.expected is not None
            and (c.source_key is None or c.source_key == ((h[4] << 7) | (h[5] & 0x7F)))
            and h[11] & 0x0F == c.expected[1]
        )

    def receive_data(
        self,
        frame: bytes,
        now: Optional[float] = None,
        *,
        ssi: Optional[float] = None,
        margin: Optional[float] = None,
    ) -> List[Event]:
        """Take a frame; never raises (bad frames are counted in ``drops``)."""
        if now is not None:
            self._now = now
        try:
            self._receive(bytes(frame), ssi, margin)
        except OSGPError as e:
            self.drops[f"bad frame: {type(e).__name__}"] += 1
        return []

    def _receive(self, frame: bytes, ssi: Optional[float], margin: Optional[float]) -> None:
        h = _frames.lon_parse(frame, True, True)
        cmd = self._cmd
        if h[1] == lon.PDU_APDU:
            if not isinstance(cmd, Round):
                self.drops["reply outside a round"] += 1
                return
            code, m = atm.decode(frame[h[14] : h[15]])
            if code != atm.REPLY or m[0] != cmd.session:
                self.drops["not a reply of this round"] += 1
                return
            r = m[1]
            self._heard.append(Link(None, r.nid, r.ssi, r.margin, ssi, margin))
            self._replies[r.nid] = r
            return
        if not isinstance(cmd, Request) or self._carrier is None or self._deadline is None:
            self.drops["not waiting"] += 1
            return
        _, items = self._carrier.accept(frame, h)
        if not items:
            self.drops["not the awaited response"] += 1
            return
        self._deadline = None
        item = items[0]
        self._resume(item if isinstance(item, (bytes, ProxyFailed)) else None)

    # -- generator plumbing ---------------------------------------------------------------
    def _stop(self) -> None:
        self._cmd, self._out, self._deadline = None, None, None
        self.done = True
        self.finished_at = self._now

    def _resume(self, value: Any) -> None:
        self._advance(value)
        self._changed()

    def _advance(self, value: Any) -> None:
        assert self._gen is not None
        try:
            cmd = self._gen.send(value)
        except StopIteration:
            self._stop()
            return
        except DATA_DEFECTS as exc:  # the procedure's own defect on what a node sent
            # ends this engine with its error (run_until_complete raises it),
            # not the medium that drives every session on the segment
            log.exception("%s stopped", self.name)
            self.error = data_defect(self.name, exc)
            self._stop()
            return
        self._cmd = cmd
        self._tries = 0
        if isinstance(cmd, Request):
            c = PlcCarrier(cmd.dest, src=(self.own.subnet, self.own.node), path=cmd.path)
            c.tids = self._next_tid
            self._carrier = c
            self._frame = self._out = c.frame(cmd.apdu)
        elif isinstance(cmd, Round):
            self._heard = []
            n = lon.Npdu(self.own.subnet, self.own.node, lon.Broadcast(0), lon.Apdu(cmd.apdu))
            self._frame = self._out = lon.encode_lpdu(lon.Lpdu(n))
        else:
            self._out = None
            self._deadline = self._now + cmd.seconds

    @property
    def carrier(self) -> Optional[PlcCarrier]:
        """The carrier of the exchange in progress (what a router matches on)."""
        return self._carrier

    def use_tids(self, allocate: Callable[[Optional[int], int], int]) -> None:
        """Take transaction numbers from ``allocate`` (osgp.session.Router.listen),
        so that none is one a session's outstanding exchange to the same
        neighbour waits on."""
        self._lent_tids = allocate

    def _next_tid(self, source: Optional[int], last: int) -> int:
        lent = self._lent_tids
        self._tid = self._tid % 15 + 1 if lent is None else lent(source, self._tid)
        return self._tid

    def _run(self) -> Generator[Command, Any, None]:  # pragma: no cover - abstract
        raise NotImplementedError
        yield


# -- discovery --------------------------------------------------------------------------
@dataclass
class _Node:
    """What the engine knows of one node."""

    nid: bytes
    serial: str = ""
    configured: bool = False
    level: Optional[int] = None  # accepted hop count
    via: Optional[bytes] = None  # the proxy it is accepted behind (None: direct)
    link: Optional[Link] = None  # the accepted (or best weak) link
    hash: int = field(init=False)  # its discovery hash, looked at every round

    def __post_init__(self) -> None:
        self.hash = atm.nid_hash(self.nid)


class Discovery(Engine):
    """Discover the meters of segment ``segment`` whose concentrator is
    ``own``.  ``plan`` gives the proxies their addresses; ``expected``: how
    many meters to expect within direct reach (sizes the first ranges);
    ``slots``/``slot_ms``: answer slots per round; ``min_margin_db``: the
    least margin (both directions) of a link a route may use;
    ``confirm``: quiet rounds (nothing new) that close a range (answers
    that collided are drawn into new slots next time); ``configured``: True
    lets configured nodes answer too (a periodic re-evaluation), False asks
    unconfigured nodes only."""

    listens = (
        atm.REPLY,
        atm.PROXY_DISCOVER,
        atm.REPORT,
        atm.UPDATE_DOMAIN_OK,
        atm.UPDATE_DOMAIN_FAIL,
        *_PROXY_CODES,
    )

    def __init__(
        self,
        segment: str,
        own: lon.SubnetNode,
        plan: AddressPlan,
        *,
        expected: int = 256,
        slots: int = 16,
        slot_ms: int = 160,
        min_margin_db: float = 24.0,
        max_hops: int = lon_proxy.MAX_REPEATERS + 1,
        max_rounds: int = 8,
        confirm: int = 2,
        configured: bool = False,
        session: int = 0,
        **kw: Any,
    ) -> None:
        super().__init__(own, **kw)
        if not 1 <= slots <= 255 or not 1 <= slot_ms <= 0xFFFF:
            raise ConfigurationError("discovery: slots 1..255, slot_ms 1..65535")
        self.segment, self.plan = segment, plan
        self.slots, self.slot_ms = slots, slot_ms
        self.min_margin = min_margin_db
        self.max_hops, self.max_rounds, self.confirm = max_hops, max_rounds, confirm
        self.flags = 0 if configured else atm.UNCONFIGURED_ONLY
        self._width = max(
            1, min(atm.HASH_SPACE, atm.HASH_SPACE * max(1, slots // 4) // max(1, expected))
        )
        self._session = session & 0xFF
        self.nodes: Dict[bytes, _Node] = {}
        self.links: Dict[Tuple[Optional[bytes], bytes], Link] = {}
        self.proxies: Dict[bytes, lon.SubnetNode] = {}
        self.topology: Optional[Topology] = None

    name = "discovery"

    @property
    def result(self) -> Optional[Topology]:
        return self.topology

    # -- the procedure -------------------------------------------------------------------
    def _run(self) -> Generator[Command, Any, None]:
        yield from self._sweep(None, 1)
        level = 1
        while level < self.max_hops:
            frontier = [n for n in self.nodes.values() if n.level == level]
            frontier.sort(key=self._outward)
            grew = False
            barren = 0
            for cand in frontier:
                if not (yield from self._address(cand)):
                    continue
                before = sum(1 for n in self.nodes.values() if n.level == level + 1)
                complete = yield from self._sweep(cand, level + 1)
                after = sum(1 for n in self.nodes.values() if n.level == level + 1)
                grew = grew or after > before
                barren = barren + 1 if complete and after == before else 0
                if barren == 2:
                    # the next proxy out would reach no further (two in a
                    # row: one's sweep may have lost every answer)
                    break
            if not grew:
                break
            level += 1
        yield from self._shorten()
        self.topology = self._result()

    def _shorten(self) -> Generator[Command, Any, None]:
        """Sweep again from each source that could shorten a route (the
        concentrator, then the proxies level by level), every node silent but
        those it never heard that sit two or more levels beyond it or have no
        route: their answers may all have been lost or collided in its
        sweep.  A link with ``min_margin_db`` both ways shortens the route;
        nearest sources first, so a shortened proxy shortens the routes
        behind it."""
        before = {n.nid: n.level for n in self.nodes.values()}
        proxies = sorted(
            (self.nodes[p] for p in self.proxies if self.nodes[p].level is not None),
            key=lambda p: (p.level, p.nid),
        )
        for src in [None, *proxies]:
            self._relevel()
            depth = 0 if src is None else (src.level or 0)
            key = None if src is None else src.nid
            if any(
                (n.level is None or n.level >= depth + 2) and (key, n.nid) not in self.links
                for n in self.nodes.values()
                if n.nid != key
            ):
                yield from self._sweep(src, depth + 1, again=True)
        self._relevel()
        # a node first heard in these sweeps is found, not shortened
        self.stats["routes shortened"] += sum(
            1
            for n in self.nodes.values()
            if n.level is not None and n.nid in before and (before[n.nid] or 99) > n.level
        )

    def _relevel(self) -> None:
        for n in self.nodes.values():
            if n.level is not None:
                n.level = len(self._path(n)) + 1

    def _outward(self, n: _Node) -> Tuple[float, float, bytes]:
        """Proxy order, the farthest out first: a node heard from nearer
        sources than its own proxy (the concentrator or a lower level) lies
        back towards the concentrator; among the rest, the weakest link
        from its proxy reaches farthest."""
        back = max(
            (
                lk.margin
                for (src, nid), lk in self.links.items()
                if nid == n.nid
                and src != n.via
                and (src is None or (self.nodes[src].level or 99) < (n.level or 0))
            ),
            default=-1e9,
        )
        return (back, n.link.margin if n.link else 0.0, n.nid)

    def _sweep(
        self, proxy: Optional[_Node], hops: int, *, again: bool = False
    ) -> Generator[Command, Any, bool]:
        """Rounds over the whole hash space from the concentrator
        (``proxy`` None) or through ``proxy``; False if the proxy failed.
        ``again``: every node may answer (configured ones too) but those
        heard from this source already or routed within ``hops`` stay
        silent."""
        # from the concentrator, ranges sized for ``expected``; through a
        # proxy, or again, most nodes in reach are known (acknowledged): the
        # whole space, narrowed as the acknowledgement tags need
        cap = self._width if proxy is None and not again else atm.HASH_SPACE
        flags = 0 if again else self.flags
        # again through a proxy, few nodes answer (collisions are rare): one
        # quiet round closes a range
        confirm = 1 if again and proxy is not None else self.confirm
        lo, width, repeats, quiet, failed = 0, cap, 0, 0, 0
        key = None if proxy is None else proxy.nid
        # heard from this source: silent from now on
        here = {nid for src, nid in self.links if src == key}
        while lo < atm.HASH_SPACE:
            hi = min(atm.HASH_SPACE - 1, lo + width - 1)
            acks = self._acks(lo, hi, hops, here)
            if len(acks) > atm.MAX_ACKS and hi > lo:
                width = max(1, width // 2)
                continue
            acks = acks[: atm.MAX_ACKS]
            self._session = (self._session + 1) & 0xFF
            m = atm.Discover(
                self._session, hops, lo, hi, self.slots, self.slot_ms, flags, tuple(acks)
            )
            self.stats["rounds"] += 1
            heard = yield from (self._direct(m) if proxy is None else self._proxied(proxy, m))
            if heard is None:  # the proxy did not run the round or report it
                failed += 1
                if failed > self.retries:
                    self.stats["proxy abandoned"] += 1
                    return False
                continue
            new = self._learn(proxy, hops, heard)
            here.update(lk.nid for lk in heard)
            repeats += 1
            quiet = 0 if new else quiet + 1
            if len(heard) * 2 >= self.slots and hi > lo:
                width = max(1, width // 2)  # crowded: collisions likely, halve
                repeats = quiet = 0
            elif quiet < confirm and repeats < self.max_rounds:
                continue  # again, the found ones acknowledged, until quiet
            else:
                lo, repeats, quiet = hi + 1, 0, 0
                if len(heard) * 8 < self.slots:  # sparse: widen, up to the first width
                    width = min(cap, width * 2)
        return True

    def _direct(self, m: atm.Discover) -> Generator[Command, Any, Optional[List[Link]]]:
        links = yield Round(atm.encode(m), m.session, m.window_s + 2 * self.frame_s)
        return list(links)

    def _proxied(
        self, proxy: _Node, m: atm.Discover
    ) -> Generator[Command, Any, Optional[List[Link]]]:
        dest, path = self._dest(proxy)
        ans = yield Request(dest, path, atm.encode(m, proxy=True))
        acc = self._decoded(ans, atm.PROXY_DISCOVER)
        if not isinstance(acc, atm.ProxyAccepted) or acc.status != 0:
            self.stats["proxy round refused or lost"] += 1
            return None
        yield Wait(acc.window_ms / 1000.0 + self.frame_s)
        links: List[Link] = []
        page, total = 0, 1
        while len(links) < total and page < 256:
            ans = yield Request(dest, path, atm.encode(atm.ReportRequest(m.session, page)))
            rep = self._decoded(ans, atm.REPORT)
            if not isinstance(rep, atm.Report) or rep.session != m.session:
                self.stats["report lost"] += 1
                return None
            total = rep.total
            for e in rep.entries:
                links.append(Link(proxy.nid, e.nid, e.ssi, e.margin, e.ssi_in, e.margin_in))
                self._replies[e.nid] = e
            if not rep.entries:
                break
            page += 1
        return links

    def _decoded(self, ans: Any, code: int) -> Any:
        if not isinstance(ans, bytes):
            return None
        try:
            got, m = atm.decode(ans, response=True)
        except OSGPError:
            self.drops["malformed response"] += 1
            return None
        return m if got == code else None

    def _address(self, node: _Node) -> Generator[Command, Any, bool]:
        """Give a proxy-to-be its planned subnet/node (Update Domain)."""
        if node.nid in self.proxies:
            return True
        a = self.plan.address(node.nid)
        dest, path = self._dest(node, by_nid=True)
        for _ in range(2):
            ans = yield Request(dest, path, atm.encode(atm.UpdateDomain(a.subnet, a.node)))
            if isinstance(ans, bytes) and ans[:1] == bytes([atm.UPDATE_DOMAIN_OK]):
                self.proxies[node.nid] = a
                return True
        self.stats["proxy not addressed"] += 1
        return False

    def _path(self, node: _Node) -> List[bytes]:
        path: List[bytes] = []
        via = node.via
        while via is not None:
            path.append(via)
            via = self.nodes[via].via
        return path[::-1]

    def _dest(
        self, node: _Node, *, by_nid: bool = False
    ) -> Tuple[lon.Address, List[lon.SubnetNode]]:
        path = [self.proxies[p] for p in self._path(node)]
        if by_nid or node.nid not in self.proxies:
            return lon.NeuronId(node.nid), path
        return self.proxies[node.nid], path

    def _acks(self, lo: int, hi: int, hops: int, here: set) -> List[bytes]:
        """Tags of the nodes in ``lo..hi`` that stay silent: heard in this
        sweep already, or with a route of ``hops`` or fewer."""
        return sorted(
            atm.ack_tag(n.nid)
            for n in self.nodes.values()
            if lo <= n.hash <= hi
            and (n.nid in here or (n.level is not None and n.level <= hops))
        )

    def _learn(self, proxy: Optional[_Node], hops: int, heard: List[Link]) -> int:
        """Record what a round heard; the number of nodes newly heard, newly
        accepted or given a shorter route."""
        new = 0
        src = None if proxy is None else proxy.nid
        for lk in heard:
            if lk.nid == src:
                continue
            r = self._replies.get(lk.nid)
            n = self.nodes.get(lk.nid)
            if n is None:
                n = self.nodes[lk.nid] = _Node(lk.nid)
                new += 1
            if r is not None:
                n.serial, n.configured = r.serial, r.configured
            old = self.links.get((src, lk.nid))
            if old is None or lk.margin > old.margin:
                self.links[(src, lk.nid)] = lk
            if lk.margin >= self.min_margin and (n.level is None or n.level > hops):
                new += 1
                n.level, n.via, n.link = hops, src, lk
        return new

    def _result(self) -> Topology:
        t = Topology(self.segment, self.own, proxies=dict(self.proxies))
        t.links = list(self.links.values())
        by_target: Dict[bytes, List[Link]] = {}
        for lk in t.links:
            by_target.setdefault(lk.nid, []).append(lk)
        for nid, n in sorted(self.nodes.items()):
            if n.level is None:  # heard only below the margin: its best link
                usable = [
                    lk
                    for lk in by_target.get(nid, [])
                    if lk.source is None or self.nodes[lk.source].level is not None
                ]
                if not usable:
                    continue
                best = max(usable, key=lambda u: (u.margin, u.nid))
                n.via, n.link = best.source, best
                n.level = 1 if best.source is None else (self.nodes[best.source].level or 0) + 1
                self.stats["weak routes"] += 1
            path = self._path(n)
            last = n.link
            assert last is not None
            alts = [
                (self._path(self.nodes[a.source]) + [a.source]) if a.source is not None else []
                for a in sorted(by_target.get(nid, []), key=lambda a: -a.margin)
                if a.source != n.via
                and a.margin >= self.min_margin
                and (a.source is None or self.nodes[a.source].level is not None)
                and (a.source is None or nid not in self._path(self.nodes[a.source]))
            ]
            t.meters[nid] = MeterRoute(
                nid,
                n.serial,
                self.segment,
                path,
                [self.proxies[p] for p in path if p in self.proxies],
                alts[:3],
                last.ssi_out if last.ssi_in is None else min(last.ssi_out, last.ssi_in),
                last.margin,
                len(path) + 1,
                n.configured,
            )
        return t
