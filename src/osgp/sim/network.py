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


@dataclass(frozen=True)
class MediumProfile:
    """Physical choices of a simulated segment (a model, not the standard)."""

    bitrate_bps: float = 2360.0  # effective BPSK rate quoted by the OSGP training material
    preamble_bytes: int = 8
    gap_s: float = 0.010  # inter-frame gap after carrier sense
    reach_m: float = 400.0
    base_loss: float = 0.01
    hop_timeout_s: float = 0.0  # 0: the Annex G per-hop rule (lon_proxy.hop_timeout_ms)

    def airtime(self, nbytes: int) -> float:
        return (nbytes + 2 + self.preamble_bytes) * 8 / self.bitrate_bps

    def loss(self, distance: float) -> float:
        if distance > self.reach_m:
            return 1.0
        return self.base_loss + (1 - self.base_loss) * (distance / self.reach_m) ** 4


class Node:
    """A meter on a segment: its device session, position and repeater role."""

    def __init__(self, address: lon.SubnetNode, position: float, device: Any) -> None:
        self.address = address
        self.position = position
        self.device = device
        self.heard = 0
        self.relayed = 0
        self._tid = 0
        # relays in flight: (downstream source key, trans) -> (requester, trans, count, deadline)
        self._relays: Dict[Tuple[int, int], Tuple[lon.SubnetNode, int, int, float]] = {}
        self._done: Dict[bytes, bytes] = {}  # request frame -> the response sent for it
        self._busy: set = set()

    def __repr__(self) -> str:
        return f"<Node {self.address.subnet}/{self.address.node} at {self.position:.0f} m>"


def _key(subnet: int, node: int) -> int:
    return (subnet << 7) | (node & 0x7F)


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
        self.nodes: Dict[int, Node] = {}
        self.busy_until = 0.0
        self.queue: Deque[Tuple[Optional[Node], bytes]] = deque()  # (sender or None, frame)
        self.stats: Counter = Counter()
        self.events: List[Event] = []
        self._wake_at: Optional[float] = None
        self.endpoint = Endpoint(bytes([192, 0, 2, 1]), bytes.fromhex("020000000001"))

    # -- building
    def add_meter(self, address: lon.SubnetNode, position: float, device: Any) -> Node:
        k = _key(address.subnet, address.node)
        if k in self.nodes or address == self.concentrator:
            raise ConfigurationError(f"address {address} is taken on segment {self.name}")
        node = self.nodes[k] = Node(address, float(position), device)
        return node

    def attach(self, session: Any) -> None:
        """A concentrator-side client session of this segment."""
        self.router.attach(session)
        self.arbiter.add(session)
        session.watch(lambda s: self.net._schedule_wake(self))

    # -- geometry
    def distance(self, a: Optional[Node], b: Optional[Node]) -> float:
        pa = 0.0 if a is None else a.position
        pb = 0.0 if b is None else b.position
        return abs(pa - pb)

    def route_to(self, address: lon.SubnetNode) -> List[lon.SubnetNode]:
        """The fewest-hop repeater chain to a meter by true geometry (an
        oracle for tests and demos; a concentrator must discover its own)."""
        target = self.nodes[_key(address.subnet, address.node)]
        reach = self.profile.reach_m * 0.8  # keep links with little loss
        if target.position <= reach:
            return []
        hops, here = [], 0.0
        nodes = sorted(self.nodes.values(), key=lambda n: n.position)
        while target.position - here > reach:
            nxt = max(
                (n for n in nodes if here < n.position <= here + reach),
                default=None,
                key=lambda n: n.position,
            )
            if nxt is None:
                raise ConfigurationError(f"{address} is out of reach of every repeater")
            hops.append(nxt.address)
            here = nxt.position
        if len(hops) > lon_proxy.MAX_REPEATERS + 1:
            raise ConfigurationError(f"{address} needs {len(hops)} hops, more than 16")
        return hops

    # -- medium
    def send(self, sender: Optional[Node], frame: bytes) -> None:
        self.queue.append((sender, frame))
        self.net._schedule_wake(self)

    def _transmit(self, now: float) -> None:
        """Start the next frame if the medium is free."""
        if now < self.busy_until:
            return
        if not self.queue:
            picked = self.arbiter.poll_transmit(now)
            if picked is not None:
                self.queue.append((None, picked[1]))
        if not self.queue:
            return
        sender, frame = self.queue.popleft()
        air = self.profile.airtime(len(frame))
        end = now + air
        self.busy_until = end + self.profile.gap_s
        self.stats["frames"] += 1
        self.stats["airtime_s"] += air
        self.net._capture(now, frame, self)
        self.net.at(end, self._heard, sender, frame)
        self.net._schedule_wake(self, self.busy_until)

    def _heard(self, now: float, sender: Optional[Node], frame: bytes) -> None:
        rng = self.net.rng
        prof = self.profile
        if sender is not None:
            if rng.random() >= prof.loss(self.distance(sender, None)):
                self.events += self.router.receive([frame], now)
            else:
                self.stats["lost at the concentrator"] += 1
        try:
            h = _frames.lon_parse(frame, True, True)
        except DecodeError:
            return
        for node in self.nodes.values():
            if node is sender:
                continue
            d = self.distance(sender, node)
            if d > prof.reach_m or rng.random() < prof.loss(d):
                continue
            node.heard += 1
            self._deliver(now, node, frame, h)
        self.net._schedule_wake(self)

    def _deliver(self, now: float, node: Node, frame: bytes, h: Sequence[Any]) -> None:
        addressed = h[2] == 2 and _key(h[7], h[8]) == _key(node.address.subnet, node.address.node)
        if not addressed:
            return  # group, broadcast and Neuron-ID frames go to the device as they are
        spdu = h[11]
        is_request = h[1] == lon.PDU_SPDU and (spdu >> 4) & 7 == lon.SPDU_REQUEST
        is_response = h[1] == lon.PDU_SPDU and (spdu >> 4) & 7 == lon.SPDU_RESPONSE
        apdu = frame[h[14] + 1 : h[15]]
        if is_request and apdu[:1] == bytes([lon_proxy.PROXY]):
            self._relay(now, node, frame, h, apdu)
            return
        if is_response and (_key(h[4], h[5]), spdu & 0x0F) in node._relays:
            self._relay_back(node, h, apdu)
            return
        node.device.receive_data(frame, now)
        out = node.device.poll_transmit(now)
        while out is not None:
            self.send(node, out)
            out = node.device.poll_transmit(now)

    # -- repeating (Annex G as LonTalk Enhanced Proxy; docs/protocol.md §6.3)
    def _relay(self, now: float, node: Node, frame: bytes, h: Sequence[Any], apdu: bytes) -> None:
        saved = node._done.get(frame)
        if saved is not None:
            self.send(node, saved)  # a retry of a finished relay: the same answer
            return
        if frame in node._busy:
            return  # a retry while the relay is still under way
        try:
            p = lon_proxy.decode_proxy(apdu)
        except DecodeError:
            self.stats["bad proxy frame"] += 1
            return
        requester = lon.SubnetNode(h[4], h[5] & 0x7F)
        nxt, fwd = lon_proxy.relay(p, own_subnet=node.address.subnet, src_subnet=h[4])
        if fwd is not None:
            dest = lon.SubnetNode(nxt[0], nxt[1])
            payload = lon_proxy.encode_proxy(fwd)
            timer = (
                lon_proxy.hop_timeout_ms(
                    lon_proxy.tx_timer_ms(p.tx.timer) * (p.tx.retries + 1),
                    len(fwd.repeaters),
                    p.tx.timer,
                    p.long_timer,
                )
                / 1000.0
            )
        else:
            if p.target.type != 1:
                self.stats["unsupported proxy target"] += 1
                return
            dest = lon.SubnetNode(p.target.data[0], p.target.data[1] & 0x7F)
            payload = p.apdu
            timer = lon_proxy.tx_timer_ms(p.tx.timer) * (p.tx.retries + 1) / 1000.0 + 1.0
        if self.profile.hop_timeout_s:
            timer = self.profile.hop_timeout_s
        node._tid = (node._tid + 1) & 0x0F
        key = (_key(dest.subnet, dest.node), node._tid)
        node._relays[key] = (requester, h[11] & 0x0F, len(p.repeaters), now + timer)
        node._busy.add(frame)
        node.relayed += 1
        out = lon.Npdu(
            node.address.subnet,
            node.address.node,
            dest,
            lon.Spdu(lon.SPDU_REQUEST, node._tid, payload),
            bytes(h[13][: _dlen(h)]),
        )
        self.send(node, lon.encode_lpdu(lon.Lpdu(out)))
        self.net.at(now + timer, self._relay_timeout, node, key, frame)

    def _relay_back(self, node: Node, h: Sequence[Any], apdu: bytes) -> None:
        key = (_key(h[4], h[5]), h[11] & 0x0F)
        requester, trans, count, _ = node._relays.pop(key)
        body = (
            apdu
            if apdu[:1] in (bytes([lon_proxy.PROXY]), bytes([lon_proxy.PROXY_FAIL]))
            else bytes([lon_proxy.PROXY]) + apdu
        )
        self._answer(node, requester, trans, body, key)

    def _relay_timeout(self, now: float, node: Node, key: Tuple[int, int], frame: bytes) -> None:
        entry = node._relays.pop(key, None)
        if entry is None:
            return
        requester, trans, count, _ = entry
        self.stats["proxy stage timed out"] += 1
        self._answer(node, requester, trans, lon_proxy.encode_failure(count), key)

    def _answer(
        self, node: Node, requester: lon.SubnetNode, trans: int, apdu: bytes, key: Tuple[int, int]
    ) -> None:
        out = lon.Npdu(
            node.address.subnet,
            node.address.node,
            requester,
            lon.Spdu(lon.SPDU_RESPONSE, trans, apdu),
        )
        frame = lon.encode_lpdu(lon.Lpdu(out))
        for req in [r for r in node._busy]:
            node._busy.discard(req)
            node._done[req] = frame
            break
        if len(node._done) > 64:
            node._done.pop(next(iter(node._done)))
        self.send(node, frame)


def _dlen(h: Sequence[Any]) -> int:
    return (0, 1, 3, 6)[h[3]] if h[3] < 4 else 0


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
        self._wakes: Dict[int, float] = {}
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
        max_outstanding: int = 1,
    ) -> Segment:
        """A segment whose concentrator is ``concentrator`` (default 1/1)."""
        seg = Segment(
            self,
            name,
            concentrator if concentrator is not None else lon.SubnetNode(1, 1),
            profile if profile is not None else MediumProfile(),
            max_outstanding,
        )
        self.segments.append(seg)
        return seg

    # -- event loop
    def at(self, t: float, fn: Callable[..., None], *args: Any) -> None:
        self._order += 1
        heapq.heappush(self._heap, (t, self._order, fn, args))

    def _schedule_wake(self, seg: Segment, t: Optional[float] = None) -> None:
        t = self.now if t is None else t
        d = seg.arbiter.next_deadline()
        if d is not None and d < t and d > self.now:
            t = d
        prev = self._wakes.get(id(seg))
        if prev is not None and self.now <= prev <= t:
            return
        self._wakes[id(seg)] = t
        self.at(t, self._wake, seg)

    def _wake(self, now: float, seg: Segment) -> None:
        if self._wakes.get(id(seg)) == now:
            del self._wakes[id(seg)]
        seg.events += seg.arbiter.handle_timeout(now)
        seg._transmit(now)
        d = seg.arbiter.next_deadline()
        if d is not None and d > now:
            self._schedule_wake(seg, d)
        if seg.queue and seg.busy_until > now:
            self._schedule_wake(seg, seg.busy_until)

    def run(self, until: float = math.inf, *, max_events: int = 50_000_000) -> None:
        """Process events in time order until the clock passes ``until`` or
        nothing is left to do."""
        for seg in self.segments:
            self._schedule_wake(seg)
        n = 0
        while self._heap and self._heap[0][0] <= until:
            t, _, fn, args = heapq.heappop(self._heap)
            self.now = max(self.now, t)
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
