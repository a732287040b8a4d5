"""Commissioning the meters of a discovered segment (reconstructed fast
commissioning, INFERRED; osgp.services.atm, docs/discovery.md).

:class:`Commissioning` is a sans-IO engine driven like a session (the same
interface as :class:`~osgp.concentrator.discovery.Discovery`).  For each
meter of a :class:`~osgp.concentrator.discovery.Topology`, nearest first, it
sends one COMMISSION request along the meter's discovered path, addressed by
Neuron ID: domain, subnet/node (from the :class:`AddressPlan`), group
memberships and the new key, sealed and encrypted by the legacy suite under
the meter's factory key.  Retries resend the identical frame; the meter
answers a repeat with the same result and applies nothing twice.  A meter
that already holds the new key (its answer was lost before a restart)
refuses the factory key with 0x0B, and the request is sealed again under
the new key.  Meters that did not answer are tried again after the others.
Outcomes are reported per meter in :attr:`results`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Dict, Generator, Optional, Sequence, Tuple, Union

from osgp.concentrator.discovery import AddressPlan, Engine, MeterRoute, Request, Topology
from osgp.errors import ConfigurationError, OSGPError
from osgp.link import lon, lon_proxy
from osgp.link.carrier import ProxyFailed
from osgp.security.suite import PLC_ENVELOPE, LegacySuite
from osgp.services import atm

__all__ = ["Commissioning", "Outcome"]

KeySource = Union[Mapping[bytes, bytes], Callable[[bytes], bytes]]


def _lookup(src: Any, nid: bytes, what: str) -> Any:
    try:
        return src(nid) if callable(src) else src[nid]
    except KeyError:
        raise ConfigurationError(f"no {what} for {nid.hex()}") from None


@dataclass(frozen=True)
class Outcome:
    """What commissioning one meter came to: ``status`` is
    ``"commissioned"``, ``"address refused"``, ``"malformed"``,
    ``"not authenticated"``, ``"proxy failed"`` or ``"no answer"``."""

    nid: bytes
    status: str
    address: Optional[lon.SubnetNode]
    attempts: int

    @property
    def ok(self) -> bool:
        return self.status == "commissioned"


_STATUS = {0: "commissioned", 1: "address refused", 2: "malformed"}
_TRANSIENT = ("no answer", "proxy failed")  # tried again in the next pass


class Commissioning(Engine):
    """Commission every meter of ``topology`` with ``plan``'s addresses.
    ``keys``: the new key per Neuron ID (a mapping or a function);
    ``factory``: the factory keys the same way; ``groups``: the groups of
    every meter, or a mapping/function per meter; ``domain``: the domain id
    (0, 1, 3 or 6 bytes); ``seq``: the first sequence number sealed;
    ``passes``: rounds over the meters that did not answer (each exchange
    already retried by the engine), a later one finding them idempotent."""

    listens = (atm.COMMISSION, lon_proxy.PROXY, lon_proxy.PROXY_FAIL)

    def __init__(
        self,
        topology: Topology,
        plan: AddressPlan,
        keys: KeySource,
        factory: KeySource,
        *,
        groups: Union[Sequence[int], Mapping[bytes, Sequence[int]], Callable[..., Any]] = (),
        domain: bytes = b"",
        seq: int = 1,
        meters: Optional[Sequence[bytes]] = None,
        passes: int = 3,
        **kw: Any,
    ) -> None:
        super().__init__(topology.concentrator, **kw)
        if len(domain) not in (0, 1, 3, 6):
            raise ConfigurationError("domain id: 0, 1, 3 or 6 bytes")
        self.topology, self.plan = topology, plan
        self.keys, self.factory, self.groups, self.domain = keys, factory, groups, bytes(domain)
        self.seq, self.passes = seq, passes
        chosen = list(topology.meters) if meters is None else [bytes(m) for m in meters]
        self.order = sorted(chosen, key=lambda n: (topology.route(n).hops, n))
        self.results: Dict[bytes, Outcome] = {}

    name = "commissioning"

    @property
    def result(self) -> Dict[bytes, Outcome]:
        return self.results

    def _groups(self, nid: bytes) -> Tuple[int, ...]:
        g = self.groups
        if callable(g) or isinstance(g, Mapping):
            return tuple(_lookup(g, nid, "groups"))
        return tuple(g)

    def _run(self) -> Generator[Any, Any, None]:
        todo = list(self.order)
        for _ in range(self.passes):
            for nid in todo:
                out = yield from self._one(self.topology.route(nid))
                before = self.results.get(nid)
                if before is not None:  # a later pass: the attempts add up
                    out = Outcome(nid, out.status, out.address, before.attempts + out.attempts)
                self.results[nid] = out
            todo = [n for n in todo if self.results[n].status in _TRANSIENT]
            if not todo:
                break
        for out in self.results.values():
            self.stats[out.status] += 1

    def _one(self, r: MeterRoute) -> Generator[Any, Any, Outcome]:
        nid = r.nid
        a = self.plan.address(nid)
        new_key = _lookup(self.keys, nid, "key")
        body = atm.encode(atm.Commission(a.subnet, a.node, self._groups(nid), new_key, self.domain))
        if any(p not in self.topology.proxies for p in r.path):
            return Outcome(nid, "no answer", None, 0)
        path = [self.topology.proxies[p] for p in r.path]
        attempts = 0
        for key in (_lookup(self.factory, nid, "factory key"), new_key):
            suite = LegacySuite(key, PLC_ENVELOPE, encrypt=True)
            wire, ctx = suite.seal_request(body, self.seq)
            self.seq += 1
            attempts += 1
            ans = yield Request(lon.NeuronId(nid), path, bytes([atm.COMMISSION]) + wire)
            if isinstance(ans, ProxyFailed):
                return Outcome(nid, "proxy failed", None, attempts)
            if not isinstance(ans, bytes):
                return Outcome(nid, "no answer", None, attempts)
            if ans == bytes([atm.COMMISSION, atm.AUTH_REFUSED]):
                continue  # it may hold the new key already: seal under that
            try:
                opened = suite.open_response(ctx, ans[1:])
                code, res = atm.decode(bytes([atm.COMMISSION]) + opened, response=True)
            except OSGPError:
                self.drops["bad commission answer"] += 1
                return Outcome(nid, "malformed", None, attempts)
            if res.nid != nid:
                return Outcome(nid, "malformed", None, attempts)
            status = _STATUS.get(res.status, "malformed")
            got = lon.SubnetNode(res.subnet, res.node) if res.status == 0 else None
            return Outcome(nid, status, got, attempts)
        return Outcome(nid, "not authenticated", None, attempts)
