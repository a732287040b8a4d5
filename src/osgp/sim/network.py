"""A simulated power-line network on a virtual clock.

Discrete-event simulation (a heap of timed events, no wall-clock sleeps) of
half-duplex power-line segments driving the same sans-IO sessions a real
asyncio loop drives: the concentrator's :class:`~osgp.session.Router` and
:class:`~osgp.session.Arbiter` on one side, device sessions on the other.

The medium, per segment:

* one frame at a time; a node with a frame to send waits until the medium is
  free (carrier-sense deferral) plus an inter-frame gap;
* airtime from the encoded LPDU length (+ CRC) plus a preamble, at the
  effective bit rate (default 2.36 kbit/s, the ETSI TS 103 908 BPSK figure
  quoted in the OSGP training material);
* every node within ``reach`` of the sender hears the frame; each hears it
  with a loss probability growing with distance (``loss(d) = base_loss +
  (1 - base_loss) * (d / reach) ** 4``), drawn from the network's seeded RNG;
* any node repeats (Annex G proxy, reconstructed as the LonTalk Enhanced
  Proxy: docs/protocol.md §6.3): a request carrying APDU 0x4D is relayed hop
  by hop; the last repeater (the agent) sends the plain request to the
  target; responses travel back as 0x4D || APDU, a stage that gets no answer
  in its hop timer answers 0x4C || count.

Every frame put on a medium can be written to a pcapng capture as CN/IP in
UDP (:mod:`osgp.link.pcapng`).  The same seed gives the same frames, the same
timing and the same capture, byte for byte.
"""

from __future__ import annotations

import bisect
import heapq
import math
import random
from collections import Counter, deque
from dataclasses import dataclass
from typing import IO, Any, Callable, Deque, Dict, List, Optional, Sequence, Tuple

from osgp import _backend
from osgp.errors import ConfigurationError, DecodeError
from osgp.link import lon, lon_proxy
from osgp.link.pcapng import Endpoint, PcapngWriter, cnip_udp_frame
from osgp.session import Arbiter, Router
from osgp.session.events import Event

__all__ = ["Network", "Segment", "Node", "MediumProfile"]

_frames, _ = _backend.load("frames")

# How long a segment remembers a frame to tell its repeats from new frames
# (needed_airtime_s): longer than any exchange's retries last (the deepest
# chain's timers add up to minutes, docs/protocol.md §6.3).
SENT_WINDOW_S = 900.0


@dataclass(frozen=True)
class MediumProfile:
    """Physical choices of a simulated segment (a model, not the standard)."""

    bitrate_bps: float = 2360.0  # effective BPSK rate quoted by the OSGP training material
    preamble_bytes: int = 8
    gap_s: float = 0.010  # inter-frame gap after carrier sense
    reach_m: float = 400.0
    base_loss: float = 0.01
    # What a stage waits for each stage beyond it (the agent included), on
    # top of the Annex G rule (lon_proxy.hop_timeout_ms adds 512 ms a stage,
    # tuned for 5.4 kbit/s LonWorks PL-20; one hop here takes about 0.5 s
    # each way and back).
    stage_allowance_s: float = 1.0
    # Signal model: the received level falls linearly in dB with distance
    # along the line, from ``tx_level_db`` at the sender to ``noise_floor_db``
    # at ``reach_m``; margin = SSI - noise floor.  Loss is a function of the
    # margin (below), so a link's loss and the SSI a receiver reports agree.
    tx_level_db: float = 100.0
    noise_floor_db: float = 40.0
    # Exchanges the concentrator may have outstanding at once on the segment:
    # LonTalk's predictive p-persistent CSMA lets many transactions to
    # different nodes overlap (ISO/IEC 14908-1); the model defers by carrier
    # sense and has no collisions.  An exchange whose frame was lost keeps
    # its place until its timer fires; at the default losses (7-14 % a hop)
    # 8 keeps the medium busy through those timers (4 leaves it idle about
    # 6 % of the time).  1 is strict half duplex.
    max_outstanding: int = 8
    # No frame lost within reach (the signal figures stay as they are): a
    # medium on which collection measures its scheduling alone.
    loss_free: bool = False

    def airtime(self, nbytes: int) -> float:
        return (nbytes + 2 + self.preamble_bytes) * 8 / self.bitrate_bps

    def ssi(self, distance: float) -> float:
        """Signal strength (dB) a receiver measures at ``distance`` metres."""
        span = self.tx_level_db - self.noise_floor_db
        return self.tx_level_db - span * distance / self.reach_m

    def margin(self, distance: float) -> float:
        """SSI above the noise floor (dB); 0 at ``reach_m``, negative beyond."""
        return self.ssi(distance) - self.noise_floor_db

    def loss_at_margin(self, margin: float) -> float:
        span = self.tx_level_db - self.noise_floor_db
        if margin <= 0:
            return 1.0
        if self.loss_free:
            return 0.0
        return self.base_loss + (1 - self.base_loss) * (1 - min(margin, span) / span) ** 4

    def loss(self, distance: float) -> float:
        if distance > self.reach_m:
            return 1.0
        if self.loss_free:
            return 0.0
        return self.base_loss + (1 - self.base_loss) * (distance / self.reach_m) ** 4


class Node:
    """A meter on a segment: its device session, position and repeater role.

    ``address``: its subnet/node, or None while it is unconfigured (reachable
    only by ``neuron_id``, LonTalk address format 3).  ``agent``: an optional
    handler offered every frame addressed to the node before its device (the
    device side of topology discovery, :mod:`osgp.sim.atm`); it returns True
    when it took the frame."""

    def __init__(
        self,
        address: Optional[lon.SubnetNode],
        position: float,
        device: Any,
        *,
        neuron_id: Optional[bytes] = None,
    ) -> None:
        self.address = address
        self.neuron_id = neuron_id
        self.segment: Optional[Segment] = None
        self._position = float(position)
        self.device = device
        self.agent: Any = None
        self.heard = 0
        self.relayed = 0
        self._tid = 0
        self._relays: Dict[Tuple[int, int], _Relay] = {}  # (downstream key, trans) ->
        self._done: Dict[bytes, bytes] = {}  # request frame -> the response sent for it
        self._busy: set = set()

    @property
    def position(self) -> float:
        return self._position

    @position.setter
    def position(self, value: float) -> None:
        self._position = float(value)
        if self.segment is not None:
            self.segment._order = None

    def __repr__(self) -> str:
        where = (
            "unconfigured" if self.address is None else f"{self.address.subnet}/{self.address.node}"
        )
        return f"<Node {where} at {self.position:.0f} m>"


def _key(subnet: int, node: int) -> int:
    return (subnet << 7) | (node & 0x7F)


_ANY = -1  # relay key of a stage whose target is a Neuron ID


class Segment:
    """One half-duplex power-line segment with its concentrator."""

    def __init__(
        self,
        net: Network,
        name: str,
        concentrator: lon.SubnetNode,
        profile: MediumProfile,
        max_outstanding: int,
    ) -> None:
        self.net, self.name, self.profile = net, name, profile
        self.concentrator = concentrator
        self.router = Router(concentrator)
        self.arbiter = Arbiter(max_outstanding=max_outstanding)
        self.nodes: Dict[int, Node] = {}  # subnet/node key -> node (configured nodes)
        self.by_nid: Dict[bytes, Node] = {}  # Neuron ID -> node
        self.members: List[Node] = []  # every node, in the order added
        self._order: Optional[Tuple[List[float], List[Node]]] = None  # by position
        self._slots: Dict[float, List[Tuple[Node, bytes]]] = {}
        self.busy_until = 0.0
        self.queue: Deque[Tuple[Optional[Node], bytes]] = deque()  # (sender or None, frame)
        self.stats: Counter = Counter()
        self.airtime_s = 0.0
        self.needed_airtime_s = 0.0  # airtime of distinct frames, each counted once
        self.needed_frames = 0
        # hashes of the frames sent in this and the last window of
        # SENT_WINDOW_S: a retry repeats its frame within seconds, and a
        # simulation that runs for days keeps two windows, not every frame
        self._sent: set = set()
        self._sent_before: set = set()
        self._sent_turn = 0.0  # when the window turns
        # frame -> called with the time it has left the sender (a stage's
        # transmit timer starts then, not while the frame waits for the medium)
        self._on_air: Dict[bytes, Callable[[float], None]] = {}
        self.events: List[Event] = []
        # where session events go: kept in ``events`` unless a driver (a
        # concentrator) takes them as they happen
        self.on_events: Optional[Callable[[List[Event]], None]] = None
        self._watch = lambda s: self.net._schedule_wake(self)
        self._wakes: set = set()  # times a wake of this segment is scheduled for
        self._airtimes: Dict[int, float] = {}  # frame length -> profile.airtime
        self._losses: Dict[float, float] = {}  # distance -> profile.loss (positions repeat)
        self.endpoint = Endpoint(bytes([192, 0, 2, 1]), bytes.fromhex("020000000001"))

    # -- building
    def add_meter(self, address: lon.SubnetNode, position: float, device: Any) -> Node:
        return self.add_node(device, position, address=address)

    def add_node(
        self,
        device: Any,
        position: float,
        *,
        address: Optional[lon.SubnetNode] = None,
        neuron_id: Optional[bytes] = None,
    ) -> Node:
        """A node at ``position`` metres from the concentrator, configured
        (``address``) and/or known by its 48-bit ``neuron_id``."""
        if address is None and neuron_id is None:
            raise ConfigurationError("a node needs an address or a Neuron ID")
        node = Node(None, position, device, neuron_id=neuron_id)
        self.adopt(node, address)
        return node

    def adopt(self, node: Node, address: Optional[lon.SubnetNode] = None) -> None:
        """Put ``node`` (off any segment) on this one, with ``address``."""
        nid = node.neuron_id
        if nid is not None and (len(nid) != 6 or nid in self.by_nid):
            raise ConfigurationError(f"Neuron ID {nid.hex()} is invalid or taken")
        if node.segment is not None:
            raise ConfigurationError(f"{node} is on segment {node.segment.name}")
        if address is not None:
            self.readdress(node, address)
        if nid is not None:
            self.by_nid[nid] = node
        node.segment = self
        self.members.append(node)
        self._order = None

    def readdress(self, node: Node, address: Optional[lon.SubnetNode]) -> None:
        """Give ``node`` a new subnet/node (None: unconfigured again)."""
        if address is not None:
            k = _key(address.subnet, address.node)
            other = self.nodes.get(k)
            if (other is not None and other is not node) or address == self.concentrator:
                raise ConfigurationError(f"address {address} is taken on segment {self.name}")
        if node.address is not None and self.nodes.get(_key(*node.address)) is node:
            del self.nodes[_key(*node.address)]
        node.address = address
        if address is not None:
            self.nodes[_key(address.subnet, address.node)] = node

    def remove(self, node: Node) -> None:
        """Take ``node`` off this segment (a meter moved or removed)."""
        self.readdress(node, None)
        if node.neuron_id is not None:
            self.by_nid.pop(node.neuron_id, None)
        self.members.remove(node)
        node.segment = None
        self._order = None

    def attach(self, session: Any) -> None:
        """A concentrator-side client session of this segment."""
        self.router.attach(session)
        self.arbiter.add(session)
        session.watch(self._watch)

    def detach(self, session: Any) -> None:
        self.router.detach(session)
        self.arbiter.remove(session)
        session.unwatch(self._watch)

    def emit(self, events: List[Event]) -> None:
        if not events:
            return
        if self.on_events is not None:
            self.on_events(events)
        else:
            self.events += events

    def attach_engine(self, engine: Any) -> None:
        """A concentrator-side engine that matches its own exchanges
        (topology discovery, commissioning): it gets the frames whose APDU
        codes it ``listens`` for and sends when the arbiter lets it."""
        self.router.listen(engine, engine.listens)
        self.arbiter.add(engine)
        engine.watch(lambda s: self.net._schedule_wake(self))
        self.net._schedule_wake(self)  # it may want the medium now

    def detach_engine(self, engine: Any) -> None:
        self.router.unlisten(engine)
        self.arbiter.remove(engine)

    # -- geometry
    def distance(self, a: Optional[Node], b: Optional[Node]) -> float:
        pa = 0.0 if a is None else a.position
        pb = 0.0 if b is None else b.position
        return abs(pa - pb)

    def route_to(self, address: Any) -> List[Any]:
        """The fewest-hop repeater chain to a meter by true geometry (an
        oracle for tests and demos; a concentrator must discover its own).
        ``address``: a SubnetNode (repeaters given as SubnetNodes) or a
        48-bit Neuron ID (repeaters given as their Neuron IDs)."""
        by_nid = isinstance(address, (bytes, bytearray))
        target = self.by_nid[bytes(address)] if by_nid else self.nodes[_key(*address)]
        reach = self.profile.reach_m * 0.6  # hops with little loss (13 % at 0.6 reach)
        if target.position <= reach:
            return []
        hops: List[Any] = []
        here = 0.0
        nodes = sorted(
            (n for n in self.members if (n.neuron_id if by_nid else n.address) is not None),
            key=lambda n: n.position,
        )
        while target.position - here > reach:
            nxt = max(
                (n for n in nodes if here < n.position <= here + reach),
                default=None,
                key=lambda n: n.position,
            )
            if nxt is None:
                raise ConfigurationError(f"{address} is out of reach of every repeater")
            hops.append(nxt.neuron_id if by_nid else nxt.address)
            here = nxt.position
        if len(hops) > lon_proxy.MAX_REPEATERS + 1:
            raise ConfigurationError(f"{address} needs {len(hops)} hops, more than 16")
        return hops

    # -- medium
    def send(self, sender: Optional[Node], frame: bytes) -> None:
        self.queue.append((sender, frame))
        self.net._schedule_wake(self)

    def send_slotted(self, sender: Node, frame: bytes, at: float) -> None:
        """Send ``frame`` at the start of a contention slot (time ``at``):
        frames that start in the same slot collide and none is heard
        (slotted contention; carrier sense cannot separate them)."""
        slot = self._slots.get(at)
        if slot is None:
            slot = self._slots[at] = []
            self.net.at(at, self._slot, at)
        slot.append((sender, frame))

    def _slot(self, now: float, at: float) -> None:
        frames = self._slots.pop(at)
        if len(frames) == 1:
            self.send(*frames[0])
            return
        self.stats["collisions"] += len(frames)
        air = max(self.profile.airtime(len(f)) for _, f in frames)
        start = max(now, self.busy_until)
        self.busy_until = start + air + self.profile.gap_s
        self.airtime_s += air
        self.net._schedule_wake(self, self.busy_until)

    def _transmit(self, now: float) -> bool:
        """Start the next frame if the medium is free; whether it did."""
        if now < self.busy_until:
            return False
        if not self.queue:
            picked = self.arbiter.poll_transmit(now)
            self.emit(self.arbiter.take_events())
            if picked is not None:
                self.queue.append((None, picked[1]))
        if not self.queue:
            return False
        sender, frame = self.queue.popleft()
        air = self._airtimes.get(len(frame))
        if air is None:
            air = self._airtimes[len(frame)] = self.profile.airtime(len(frame))
        end = now + air
        self.busy_until = end + self.profile.gap_s
        self.stats["frames"] += 1
        self.airtime_s += air
        if now >= self._sent_turn:
            self._sent_before, self._sent = self._sent, set()
            self._sent_turn = now + SENT_WINDOW_S
        h = hash(frame)
        # a frame's first transmission (retries repeat it)
        if h not in self._sent and h not in self._sent_before:
            self._sent.add(h)
            self.needed_airtime_s += air
            self.needed_frames += 1
        net = self.net
        if net._writer is not None:
            net._capture(now, frame, self)
        net._order += 1
        heapq.heappush(net._heap, (end, net._order, self._heard, (sender, frame)))
        armed = self._on_air.pop(frame, None) if self._on_air else None
        if armed is not None:
            armed(end)
        return True

    def _in_reach(self, position: float) -> List[Node]:
        """The nodes within ``reach_m`` of ``position``, in position order."""
        if self._order is None:
            ordered = sorted(self.members, key=lambda n: n.position)
            self._order = ([n.position for n in ordered], ordered)
        pos, ordered = self._order
        r = self.profile.reach_m
        return ordered[
            bisect.bisect_left(pos, position - r) : bisect.bisect_right(pos, position + r)
        ]

    def _loss(self, d: float) -> float:
        p = self._losses.get(d)
        if p is None:
            p = self._losses[d] = self.profile.loss(d)
        return p

    def _heard(self, now: float, sender: Optional[Node], frame: bytes) -> None:
        rng = self.net.rng
        prof = self.profile
        if sender is not None:
            d0 = abs(sender._position)  # its distance to the concentrator, at 0
            if rng.random() >= self._loss(d0):
                session = self.router.route(frame)
                if session is not None:
                    if getattr(session, "measures_signal", False):
                        ev = session.receive_data(
                            frame, now, ssi=prof.ssi(d0), margin=prof.margin(d0)
                        )
                    else:
                        ev = session.receive_data(frame, now)
                    if ev:
                        self.emit(ev)
            else:
                self.stats["not heard at the concentrator"] += 1
        try:
            h = _frames.lon_parse(frame, True, True)
        except DecodeError:
            return
        here = 0.0 if sender is None else sender._position
        # a unicast frame matters only at its destination (the others drop it
        # at their address check): draw its reception there alone
        fmt = h[2]
        if fmt == 2 or fmt == 3:
            dest = self.nodes.get(_key(h[7], h[8])) if fmt == 2 else self.by_nid.get(bytes(h[12]))
            hearers: Sequence[Node] = () if dest is None else (dest,)
        else:
            hearers = self._in_reach(here)
        for node in hearers:
            if node is sender:
                continue
            d = abs(node._position - here)
            if d > prof.reach_m or rng.random() < self._loss(d):
                continue
            node.heard += 1
            self._deliver(now, node, frame, h, d)
        self.net._schedule_wake(self)

    def _for_node(self, node: Node, h: Sequence[Any]) -> bool:
        """Whether the frame's destination (``lon_parse`` fields) includes ``node``."""
        fmt = h[2]
        a = node.address
        if fmt == 2:
            return a is not None and _key(h[7], h[8]) == _key(a.subnet, a.node)
        if fmt == 3:
            return node.neuron_id is not None and bytes(h[12]) == node.neuron_id
        if fmt == 0:  # broadcast: subnet 0 is the whole domain (ISO/IEC 14908-1)
            return h[7] == 0 or (a is not None and h[7] == a.subnet)
        return True  # group: the device knows its groups

    def _deliver(self, now: float, node: Node, frame: bytes, h: Sequence[Any], d: float) -> None:
        if not self._for_node(node, h):
            return
        if node.agent is not None and node.agent.receive(self, node, frame, h, now, d):
            return
        spdu = h[11]
        is_request = h[1] == lon.PDU_SPDU and (spdu >> 4) & 7 == lon.SPDU_REQUEST
        is_response = h[1] == lon.PDU_SPDU and (spdu >> 4) & 7 == lon.SPDU_RESPONSE
        apdu = frame[h[14] + 1 : h[15]]
        if h[2] in (2, 3) and is_request and apdu[:1] == bytes([lon_proxy.PROXY]):
            self._relay(now, node, frame, h, apdu)
            return
        if h[2] == 2 and is_response:
            key = (_key(h[4], h[5]), spdu & 0x0F)
            if key not in node._relays:
                key = (_ANY, spdu & 0x0F)  # a relay to a Neuron ID answers from any address
            if key in node._relays:
                self._relay_back(node, key, apdu)
                return
        if node.device is None:
            return
        node.device.receive_data(frame, now)
        self.flush(node, now)

    def flush(self, node: Node, now: float) -> None:
        """Put on the medium what ``node``'s device has to send."""
        out = node.device.poll_transmit(now)
        while out is not None:
            self.send(node, out)
            out = node.device.poll_transmit(now)

    # -- repeating (Annex G as LonTalk Enhanced Proxy; docs/protocol.md §6.3)
    def _relay(self, now: float, node: Node, frame: bytes, h: Sequence[Any], apdu: bytes) -> None:
        saved = node._done.get(frame)
        if saved is not None:
            self.stats["repeated proxy request"] += 1
            self.send(node, saved)  # a retry of a finished relay: the same answer
            return
        if frame in node._busy:
            return  # a retry while the relay is still under way
        try:
            p = lon_proxy.decode_proxy(apdu)
            own = node.address.subnet if node.address is not None else 0
            nxt, fwd = lon_proxy.relay(p, own_subnet=own, src_subnet=h[4])
        except DecodeError:
            self.stats["bad proxy frame"] += 1
            return
        # the onward leg's timer: ProxyTxCtrl towards a repeater, the SICB's
        # own TxCtrl from the agent to the target
        tx = p.txctrl if fwd is not None else p.sicb.txctrl
        last_retry_ms = lon_proxy.tx_timer_ms(tx.timer) * (tx.retries + 1)
        dest: lon.Address
        if fwd is not None:
            dest = lon.SubnetNode(nxt[0], nxt[1])
            payload = lon_proxy.encode_proxy(fwd)
            # Annex G adds to a repeater's last retry timer by the count it
            # forwards (lcs_proxy.c decrements the count first); the model's
            # allowance covers every stage beyond, the agent included
            wait_ms = lon_proxy.hop_timeout_ms(
                last_retry_ms, len(fwd.repeaters), tx.timer, p.long_timer
            )
            beyond = len(fwd.repeaters) + 1
        elif p.target.type == 1:  # subnet/node target: the agent sends the plain request
            dest = lon.SubnetNode(p.target.fields[0], p.target.fields[1] & 0x7F)
            payload = p.apdu
            wait_ms, beyond = last_retry_ms, 0  # the agent adds nothing (lcs_proxy.c)
        elif p.target.type == 2 and len(p.target.fields) == 7:  # subnet + Neuron ID
            dest = lon.NeuronId(bytes(p.target.fields[1:]), p.target.fields[0])
            payload = p.apdu
            wait_ms, beyond = last_retry_ms, 0
        else:
            self.stats["unsupported proxy target"] += 1
            return
        give_up = wait_ms / 1000.0 + beyond * self.profile.stage_allowance_s
        # a stage retries evenly within what it waits (the agent: its
        # transmit timer), but a try waits at least the transmit timer plus
        # one clean pass of the stages beyond (a repeat sooner only doubles
        # frames still on their way); timers run from the end of a frame's
        # transmission, not while it waits for the medium
        tries = tx.retries + 1
        per_try = max(
            give_up / tries,
            lon_proxy.tx_timer_ms(tx.timer) / 1000.0 + beyond * self.profile.stage_allowance_s,
        )
        node._tid = node._tid % 15 + 1
        to = _key(dest.subnet, dest.node) if isinstance(dest, lon.SubnetNode) else _ANY
        key = (to, node._tid)
        requester = lon.SubnetNode(h[4], h[5] & 0x7F)
        me = node.address if node.address is not None else lon.SubnetNode(0, 0)
        out = lon.Npdu(
            me.subnet,
            me.node,
            dest,
            lon.Spdu(lon.SPDU_REQUEST, node._tid, payload),
            bytes(h[13]),
        )
        onward = lon.encode_lpdu(lon.Lpdu(out))
        relay = _Relay(requester, h[11] & 0x0F, len(p.repeaters), frame, onward)
        relay.per_try, relay.tries_left, relay.give_up = per_try, tries - 1, give_up
        node._relays[key] = relay
        node._busy.add(frame)
        node.relayed += 1
        self._send_try(node, key, relay)

    def _send_try(self, node: Node, key: Tuple[int, int], r: _Relay) -> None:
        self._on_air[r.onward] = lambda end: self._tried(end, node, key, r)
        self.send(node, r.onward)

    def _tried(self, end: float, node: Node, key: Tuple[int, int], r: _Relay) -> None:
        """A try has left the stage at ``end``: its timer starts."""
        if r.deadline is None:  # the stage gives up what it waits after its first try
            r.deadline = end + r.give_up
            self.net.at(r.deadline, self._relay_timeout, node, key, r)
        if r.tries_left:
            self.net.at(end + r.per_try, self._relay_retry, node, key, r)

    def _relay_retry(self, now: float, node: Node, key: Tuple[int, int], r: _Relay) -> None:
        if node._relays.get(key) is r and r.deadline is not None and now < r.deadline:
            r.tries_left -= 1
            self.stats["proxy retries"] += 1
            self._send_try(node, key, r)

    def _relay_timeout(self, now: float, node: Node, key: Tuple[int, int], r: _Relay) -> None:
        if node._relays.get(key) is r:
            del node._relays[key]
            self.stats["proxy stage timed out"] += 1
            self._answer(node, r, lon_proxy.encode_failure(r.count))

    def _relay_back(self, node: Node, key: Tuple[int, int], apdu: bytes) -> None:
        r = node._relays.pop(key)
        proxied = apdu[:1] in (bytes([lon_proxy.PROXY]), bytes([lon_proxy.PROXY_FAIL]))
        self._answer(node, r, apdu if proxied else bytes([lon_proxy.PROXY]) + apdu)

    def _answer(self, node: Node, r: _Relay, apdu: bytes) -> None:
        me = node.address if node.address is not None else lon.SubnetNode(0, 0)
        out = lon.Npdu(
            me.subnet,
            me.node,
            r.requester,
            lon.Spdu(lon.SPDU_RESPONSE, r.trans, apdu),
        )
        frame = lon.encode_lpdu(lon.Lpdu(out))
        node._busy.discard(r.request)
        node._done[r.request] = frame  # a repeat of the same request gets the same answer
        if len(node._done) > 64:
            node._done.pop(next(iter(node._done)))
        self.send(node, frame)


@dataclass
class _Relay:
    """A relay in flight at one node."""

    requester: lon.SubnetNode
    trans: int
    count: int  # proxy count at this stage, reported on failure
    request: bytes  # the frame that asked for the relay
    onward: bytes  # the frame sent on (resent on each retry)
    per_try: float = 0.0  # seconds from the end of a try to the next
    tries_left: int = 0
    give_up: float = 0.0  # seconds from the end of the first try to the 0x4C answer
    deadline: Optional[float] = None


class Network:
    """Segments on one virtual clock.  ``capture``: a binary file to write
    every frame to as pcapng (CN/IP in UDP)."""

    def __init__(
        self,
        *,
        seed: int = 0,
        capture: Optional[IO[bytes]] = None,
        epoch_ns: int = 1_767_225_600_000_000_000,
    ) -> None:
        self.rng = random.Random(seed)
        self.now = 0.0
        self.segments: List[Segment] = []
        self._heap: List[Tuple[float, int, Callable[..., None], tuple]] = []
        self._order = 0
        self.epoch_ns = epoch_ns
        self.processed = 0
        self._writer = PcapngWriter(capture) if capture is not None else None
        self._seq = 0

    def add_segment(
        self,
        name: str,
        concentrator: Optional[lon.SubnetNode] = None,
        *,
        profile: Optional[MediumProfile] = None,
        max_outstanding: Optional[int] = None,
    ) -> Segment:
        """A segment whose concentrator is ``concentrator`` (default 1/1);
        ``max_outstanding`` overrides the profile's."""
        prof = profile if profile is not None else MediumProfile()
        seg = Segment(
            self,
            name,
            concentrator if concentrator is not None else lon.SubnetNode(1, 1),
            prof,
            max_outstanding if max_outstanding is not None else prof.max_outstanding,
        )
        self.segments.append(seg)
        return seg

    # -- the concentrator's runtime (osgp.concentrator.engine.Runtime)
    def time(self) -> float:
        return self.now

    def utc(self, now: float) -> float:
        """UTC epoch seconds at virtual time ``now``."""
        return self.epoch_ns / 1e9 + now

    def call_at(self, t: float, fn: Callable[[float], None]) -> None:
        self.at(t, fn)

    # -- event loop
    def at(self, t: float, fn: Callable[..., None], *args: Any) -> None:
        self._order += 1
        heapq.heappush(self._heap, (t, self._order, fn, args))

    def _schedule_wake(self, seg: Segment, t: Optional[float] = None) -> None:
        """Look at ``seg`` again at ``t`` (default: as soon as its medium is
        free) and at its sessions' next deadline; one event per distinct time
        (``_wake_at``, written out here: this runs for every frame)."""
        now = self.now
        when = seg.busy_until if t is None else t
        d = seg.arbiter.next_deadline()
        wakes = seg._wakes
        for w in (when if when > now else now, d if d is not None and d > now else None):
            if w is not None and w not in wakes:
                wakes.add(w)
                self._order += 1
                heapq.heappush(self._heap, (w, self._order, self._wake, (seg, w)))

    def _wake_at(self, seg: Segment, t: float) -> None:
        """One wake event of ``seg`` per distinct time."""
        if t not in seg._wakes:
            seg._wakes.add(t)
            self._order += 1
            heapq.heappush(self._heap, (t, self._order, self._wake, (seg, t)))

    def _wake(self, now: float, seg: Segment, t: float) -> None:
        seg._wakes.discard(t)
        events = seg.arbiter.handle_timeout(now)
        if events:
            seg.emit(events)
        if seg._transmit(now) or seg.queue:
            self._wake_at(seg, max(now, seg.busy_until))
        d = seg.arbiter.next_deadline()
        if d is not None and d > now and d not in seg._wakes:
            self._wake_at(seg, d)

    def pending(self) -> bool:
        """Whether anything is scheduled."""
        return bool(self._heap)

    def run(self, until: float = math.inf, *, max_events: int = 50_000_000) -> None:
        """Process events in time order until the clock passes ``until`` or
        nothing is left to do."""
        for seg in self.segments:
            self._schedule_wake(seg)
        n = 0
        heap, pop = self._heap, heapq.heappop
        while heap and heap[0][0] <= until:
            t, _, fn, args = pop(heap)
            if t > self.now:
                self.now = t
            fn(self.now, *args)
            n += 1
            if n >= max_events:
                raise ConfigurationError(
                    f"more than {max_events} events: the network does not settle"
                )
        self.processed += n
        if until != math.inf:
            self.now = max(self.now, until)

    def _capture(self, now: float, frame: bytes, seg: Segment) -> None:
        if self._writer is None:
            return
        self._seq += 1
        dst = Endpoint(bytes([192, 0, 2, 255]), b"\xff" * 6)
        body = frame[:-2]  # CN/IP carries the LPDU without its CRC
        self._writer.write(
            cnip_udp_frame(body, seg.endpoint, dst, sequence=self._seq, ip_id=self._seq),
            self.epoch_ns + round(now * 1e9),
        )
