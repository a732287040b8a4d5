"""A simulated fleet: thousands of meters on the power-line network.

One substation feeds ``segments`` distribution transformers; each
transformer's low-voltage feeder is one half-duplex :class:`Segment` with its
concentrator at position 0.  Meters are :class:`~osgp.sim.SimMeter` with one
PLC port (legacy suite, ``PLC_ENVELOPE``) keyed with the per-meter factory
key, and start unconfigured: reachable only by their 48-bit Neuron ID
(LonTalk address format 3, ISO/IEC 14908-1) until commissioning gives them a
subnet/node; each node's :class:`~osgp.sim.atm.AtmAgent` answers topology
discovery and commissioning.

About ``out_of_reach`` of the meters are placed beyond the distance a
concentrator reaches with little loss (0.6 ``reach_m``, the criterion of
:meth:`Segment.route_to`), so they need one to several repeater hops.
Everything (Neuron IDs, serials, keys, positions, phases) follows from the
seed.

    >>> fleet = build_fleet(FleetSpec(meters=20, segments=2))
    >>> len(fleet.meters), len(fleet.segments)
    (20, 2)
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import IO, Dict, List, Optional

from osgp.errors import ConfigurationError
from osgp.link import lon
from osgp.link.carrier import PlcDeviceCarrier
from osgp.security.suite import PLC_ENVELOPE, LegacySuite
from osgp.sim.atm import AtmAgent
from osgp.sim.faults import Faults
from osgp.sim.meter import SimMeter
from osgp.sim.model import splitmix64
from osgp.sim.network import MediumProfile, Network, Node, Segment

__all__ = ["FleetSpec", "Fleet", "Placement", "build_fleet", "SUBNETS_PER_SEGMENT"]

SUBNETS_PER_SEGMENT = 8  # LonTalk subnets reserved per segment (127 nodes each)
_DIRECT = 0.6  # share of reach_m a hop covers with little loss (Segment.route_to)


@dataclass(frozen=True)
class FleetSpec:
    """What to build.  ``start``: UTC epoch second of virtual time 0;
    ``out_of_reach``: share of meters beyond direct reach of the
    concentrator; ``profile``: the medium (default: ``reach_m`` and
    ``base_loss`` on the default profile); ``capture``: a binary file for a
    pcapng capture of every frame; ``faults``: applied to every meter (each
    meter throws its own dice, seeded from its seed)."""

    meters: int = 1000
    segments: int = 4
    seed: int = 1
    start: float = 1_767_225_600.0
    reach_m: float = 400.0
    base_loss: float = 0.01
    out_of_reach: float = 0.25
    phases: int = 3
    profile: Optional[MediumProfile] = None
    capture: Optional[IO[bytes]] = None
    faults: Optional[Faults] = None

    def __post_init__(self) -> None:
        if self.meters < 0 or self.segments < 1 or self.phases < 1:
            raise ConfigurationError("fleet: meters >= 0, segments >= 1, phases >= 1")
        if self.segments * SUBNETS_PER_SEGMENT > 255:
            raise ConfigurationError(f"fleet: at most {255 // SUBNETS_PER_SEGMENT} segments")
        if not 0.0 <= self.out_of_reach <= 1.0:
            raise ConfigurationError("fleet: out_of_reach must be within 0..1")


@dataclass(frozen=True)
class Placement:
    """Where a meter hangs: its segment (feeder), distance from the
    concentrator along it, phase (1..phases) and transformer."""

    segment: str
    position_m: float
    phase: int
    transformer: str


class Fleet:
    """The built fleet (see :func:`build_fleet`)."""

    def __init__(self, spec: FleetSpec, network: Network) -> None:
        self.spec = spec
        self.network = network
        self.segments: List[Segment] = []
        self.meters: Dict[bytes, SimMeter] = {}
        self.placement: Dict[bytes, Placement] = {}
        self._nodes: Dict[bytes, Node] = {}
        self._seed_bytes = spec.seed.to_bytes(8, "big", signed=True)

    def factory_key(self, neuron_id: bytes) -> bytes:
        """The 12-byte OMA key the manufacturer hands the utility for this
        meter (legacy PLC suite), derived from the fleet seed."""
        return hashlib.blake2b(
            bytes(neuron_id), digest_size=12, key=self._seed_bytes, person=b"osgp-factory"
        ).digest()

    def node(self, neuron_id: bytes) -> Node:
        """The meter's node on the network."""
        try:
            return self._nodes[bytes(neuron_id)]
        except KeyError:
            raise ConfigurationError(f"no meter with Neuron ID {bytes(neuron_id).hex()}") from None

    def segment(self, name: str) -> Segment:
        for s in self.segments:
            if s.name == name:
                return s
        raise ConfigurationError(f"no segment {name!r}")

    def subnets(self, segment: str) -> range:
        """The LonTalk subnets reserved for ``segment``; its concentrator is
        node 1 of the first."""
        i = self.segments.index(self.segment(segment))
        return range(i * SUBNETS_PER_SEGMENT + 1, (i + 1) * SUBNETS_PER_SEGMENT + 1)

    def move(self, neuron_id: bytes, segment: str, position_m: float) -> None:
        """The meter now hangs on ``segment`` (another transformer) at
        ``position_m``.  It keeps its configuration; its subnet/node is
        usable on the new segment only if no other node has it there."""
        node = self.node(neuron_id)
        dest = self.segment(segment)
        old = node.segment
        address = node.address
        if old is not None:
            old.remove(node)
        node.position = position_m
        free = address is not None and _key(address) not in dest.nodes
        dest.adopt(node, address if free and address != dest.concentrator else None)
        p = self.placement[bytes(neuron_id)]
        self.placement[bytes(neuron_id)] = Placement(segment, float(position_m), p.phase, _tr(dest))


def _key(a: lon.SubnetNode) -> int:
    return (a.subnet << 7) | (a.node & 0x7F)


def _tr(seg: Segment) -> str:
    return "TR-" + seg.name.rsplit("-", 1)[-1]


def _positions(rng: random.Random, n: int, far: int, reach: float) -> List[float]:
    """``n - far`` meters within a direct hop, ``far`` beyond it, no gap
    along the feeder wider than half a hop (so every meter has a chain)."""
    hop = _DIRECT * reach
    near = [rng.uniform(0.02 * hop, hop) for _ in range(n - far)]
    extent = hop * (1 + min(3, max(1, far // 8)))
    beyond = [rng.uniform(hop * 1.001, extent) for _ in range(far)]
    every = sorted(near + beyond)
    last = 0.0
    for i, p in enumerate(every):
        if p - last > hop / 2:
            p = last + hop / 2
        every[i] = last = p
    return every


def build_fleet(spec: FleetSpec = FleetSpec()) -> Fleet:
    """Build the network, its segments and meters from ``spec``."""
    prof = spec.profile or MediumProfile(reach_m=spec.reach_m, base_loss=spec.base_loss)
    net = Network(
        seed=splitmix64(spec.seed), capture=spec.capture, epoch_ns=round(spec.start * 1e9)
    )
    fleet = Fleet(spec, net)
    rng = random.Random(splitmix64(spec.seed ^ 0x5EED_F1EE7))
    for i in range(spec.segments):
        seg = net.add_segment(
            f"seg-{i + 1}", lon.SubnetNode(i * SUBNETS_PER_SEGMENT + 1, 1), profile=prof
        )
        fleet.segments.append(seg)
    seen: set = set()
    counter = 0
    for i, seg in enumerate(fleet.segments):
        n = spec.meters // spec.segments + (1 if i < spec.meters % spec.segments else 0)
        far = round(n * spec.out_of_reach)
        positions = _positions(rng, n, far, prof.reach_m)
        rng.shuffle(positions)  # Neuron IDs and serials carry no hint of position
        for pos in positions:
            nid = rng.getrandbits(48).to_bytes(6, "big")
            while nid in seen:
                nid = rng.getrandbits(48).to_bytes(6, "big")
            seen.add(nid)
            counter += 1
            meter = SimMeter(
                f"SIM{counter:07d}",
                seed=splitmix64(spec.seed * 1_000_003 + counter),
                start=spec.start,
                links=[
                    (
                        PlcDeviceCarrier([lon.NeuronId(nid)]),
                        LegacySuite(fleet.factory_key(nid), PLC_ENVELOPE),
                    )
                ],
                faults=spec.faults,
            )
            fleet.meters[nid] = meter
            port = meter.port("plc")
            node = fleet._nodes[nid] = seg.add_node(port, pos, neuron_id=nid)
            node.agent = AtmAgent(port, fleet.factory_key(nid), splitmix64(meter.seed ^ 0xA7))
            phase = rng.randrange(spec.phases) + 1
            fleet.placement[nid] = Placement(seg.name, pos, phase, _tr(seg))
    return fleet
