"""The device side of topology discovery and commissioning for a simulated
node (reconstructed ATM, INFERRED; osgp.services.atm and docs/discovery.md).

An :class:`AtmAgent` sits on a network :class:`~osgp.sim.network.Node` and
takes the ATM frames addressed to it before its meter's device session:

* DISCOVER: if its Neuron ID hash is in the round's range and its tag is not
  acknowledged, it answers once in a random slot (seeded) with the signal
  strength and margin the medium model gives the request at its distance;
* PROXY_DISCOVER: it acknowledges at once, broadcasts the round onward with
  its own address, collects the answers (with their signal as it heard
  them) and serves them in REPORT pages;
* Update Domain (ISO/IEC 14908-1 0x63): takes the subnet/node;
* COMMISSION: opens the sealed body under the key it holds (the factory
  key until a commissioning replaced it),
  applies domain, subnet/node, groups and key as absolute state, and
  answers a retry (the identical frame) with the same sealed result.

The new address is kept in the PLC carrier (and the network's node table);
the new key replaces the PLC port's suite, the sequence state kept.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple, cast

from osgp.errors import OSGPError
from osgp.link import lon
from osgp.link.carrier import PlcDeviceCarrier
from osgp.security.suite import PLC_ENVELOPE, LegacySuite
from osgp.services import atm

if TYPE_CHECKING:  # pragma: no cover
    from osgp.sim.meter import MeterPort
    from osgp.sim.network import Node, Segment

__all__ = ["AtmAgent"]
_CODES = frozenset(
    (atm.DISCOVER, atm.REPLY, atm.PROXY_DISCOVER, atm.REPORT, atm.COMMISSION, atm.UPDATE_DOMAIN)
)
_GUARD_S = 0.5  # a repeater keeps its round open this long after the last slot


class _LastDiscover:
    """The last discovery request decoded: every node in reach hears the same
    broadcast, one after another, so each one decodes it only once."""

    last: Tuple[bytes, Optional[atm.Discover]] = (b"", None)  # one tuple: read and set at once

    @classmethod
    def decode(cls, apdu: bytes) -> atm.Discover:
        seen, m = cls.last
        if m is None or seen != apdu:
            m = atm.decode(apdu)[1]  # raises on a malformed request, caching nothing
            cls.last = (apdu, m)
        return m


class AtmAgent:
    """ATM device side of one node whose meter port is ``port``."""

    def __init__(self, port: MeterPort, factory_key: bytes, seed: int) -> None:
        self.port = port
        self.carrier: PlcDeviceCarrier = cast(PlcDeviceCarrier, port.carrier)
        self.factory = LegacySuite(factory_key, PLC_ENVELOPE)
        self.rng = random.Random(seed)
        self.stats: Counter = Counter()
        self._entries: Dict[bytes, atm.Reply] = {}  # a repeater's current round
        self._round: Optional[atm.Discover] = None
        self._round_end = -1.0
        self._report: Tuple[int, List[atm.Reply]] = (-1, [])
        self._saved: Dict[bytes, bytes] = {}  # request frame -> response frame
        self._commission_seq = -1

    # -- frames -------------------------------------------------------------------
    def receive(
        self, seg: Segment, node: Node, frame: bytes, h: Sequence[Any], now: float, d: float
    ) -> bool:
        """Take ``frame`` (``lon_parse`` fields ``h``, heard at ``d`` metres)
        if it is an ATM message; False leaves it to the device."""
        spdu = h[1] == lon.PDU_SPDU
        if not (spdu or h[1] == lon.PDU_APDU):
            return False
        start = h[14] + (1 if spdu else 0)
        code = frame[start] if start < h[15] else -1
        if code not in _CODES:
            return False
        if spdu and (h[11] >> 4) & 7 != lon.SPDU_REQUEST:
            return False  # responses (a repeater's relays) are the network's
        apdu = frame[start : h[15]]
        saved = self._saved.get(apdu) if spdu else None
        if saved is not None:  # a retry, possibly relayed anew: the same answer
            self.stats["repeated request"] += 1
            self._respond(seg, node, apdu, h, saved, save=False)
            return True
        try:
            if code == atm.COMMISSION and spdu:
                self._commission(seg, node, h, apdu)
            else:
                self._handle(seg, node, frame, h, now, d, code, spdu)
        except OSGPError:
            self.stats["malformed"] += 1  # what a meter does with a bad frame: nothing
        return True

    def _handle(
        self,
        seg: Segment,
        node: Node,
        frame: bytes,
        h: Sequence[Any],
        now: float,
        d: float,
        code: int,
        spdu: bool,
    ) -> None:
        apdu = frame[h[14] + (1 if spdu else 0) : h[15]]
        if code == atm.DISCOVER and not spdu:
            self._discover(seg, node, h, now, d, _LastDiscover.decode(apdu))
        elif code == atm.REPLY and not spdu:
            session, r = atm.decode(apdu)[1]
            rnd = self._round
            if rnd is not None and session == rnd.session and now <= self._round_end:
                prof = seg.profile
                self._entries[r.nid] = atm.Reply(
                    r.nid, r.hops, r.ssi, r.margin, r.serial, r.configured,
                    prof.ssi(d), prof.margin(d),
                )  # fmt: skip
        elif code == atm.PROXY_DISCOVER and spdu:
            self._proxy(seg, node, apdu, h, now, atm.decode(apdu)[1])
        elif code == atm.REPORT and spdu:
            req = atm.decode(apdu)[1]
            session, entries = self._report
            pages = atm.paginate(entries)
            page = pages[req.page] if req.session == session and req.page < len(pages) else ()
            total = len(entries) if req.session == session else 0
            self._respond(
                seg, node, apdu, h, atm.encode(atm.Report(session, total, req.page, page))
            )
        elif code == atm.UPDATE_DOMAIN and spdu:
            m = atm.decode(apdu)[1]
            ok = self._take_address(seg, node, lon.SubnetNode(m.subnet, m.node))
            out = atm.UPDATE_DOMAIN_OK if ok else atm.UPDATE_DOMAIN_FAIL
            self._respond(seg, node, apdu, h, bytes([out]), save=False)
        else:
            self.stats["wrong service"] += 1

    def _discover(
        self, seg: Segment, node: Node, h: Sequence[Any], now: float, d: float, m: atm.Discover
    ) -> None:
        nid = node.neuron_id
        if nid is None or not m.covers(nid):
            return
        if m.flags & atm.UNCONFIGURED_ONLY and node.address is not None:
            return
        prof = seg.profile
        reply = atm.Reply(
            nid,
            m.hops,
            prof.ssi(d),
            prof.margin(d),
            self.port.meter.serial,
            node.address is not None,
        )
        out = _frame(
            node, lon.SubnetNode(h[4], h[5]), lon.Apdu(atm.encode(reply, session=m.session))
        )
        slot = self.rng.randrange(m.slots)
        seg.send_slotted(node, out, now + slot * m.slot_ms / 1000.0)
        self.stats["answered"] += 1

    def _proxy(
        self, seg: Segment, node: Node, apdu: bytes, h: Sequence[Any], now: float, m: atm.Discover
    ) -> None:
        if node.address is None or (self._round is not None and now <= self._round_end):
            self._respond(seg, node, apdu, h, atm.encode(atm.ProxyAccepted(1, 0)), save=False)
            return
        window_ms = m.slots * m.slot_ms + int(_GUARD_S * 2000)
        self._respond(seg, node, apdu, h, atm.encode(atm.ProxyAccepted(0, window_ms)))
        self._round, self._entries = m, {}
        self._round_end = now + window_ms / 1000.0
        onward = _frame(node, lon.Broadcast(0), lon.Apdu(atm.encode(m)))
        seg.send(node, onward)
        seg.net.at(self._round_end, self._close, m.session)
        self.stats["proxy rounds"] += 1

    def _close(self, now: float, session: int) -> None:
        if self._round is not None and self._round.session == session:
            entries = sorted(self._entries.values(), key=lambda e: e.nid)
            self._report = (session, entries)
            self._round = None

    # -- configuration ----------------------------------------------------------------
    def _take_address(self, seg: Segment, node: Node, a: lon.SubnetNode) -> bool:
        if node.address == a:
            return True
        other = seg.nodes.get((a.subnet << 7) | a.node)
        if (other is not None and other is not node) or a == seg.concentrator:
            return False
        seg.readdress(node, a)
        carrier = self.carrier
        nid = [x for x in carrier.addresses if isinstance(x, lon.NeuronId)]
        carrier.addresses = (a, *nid)
        return True

    def _commission(self, seg: Segment, node: Node, h: Sequence[Any], apdu: bytes) -> None:
        # the key it holds: the factory key until a commissioning replaced it
        suite = self.port.suite if isinstance(self.port.suite, LegacySuite) else self.factory
        try:
            body, seq, ctx = suite.open_request(apdu[1:])
        except OSGPError:
            self.stats["commission not authenticated"] += 1
            self._respond(seg, node, apdu, h, bytes([atm.COMMISSION, atm.AUTH_REFUSED]), save=False)
            return
        if seq <= self._commission_seq:
            self.stats["stale commission"] += 1
            return  # a replay of an older commissioning: no answer, no effect
        nid = node.neuron_id or bytes(6)
        try:
            m = atm.decode_commission(body)
        except OSGPError:
            result = atm.CommissionResult(2, nid, 0, 0)
        else:
            a = lon.SubnetNode(m.subnet, m.node)
            if self._take_address(seg, node, a):
                self._apply(m)
                result = atm.CommissionResult(0, nid, m.subnet, m.node)
            else:
                result = atm.CommissionResult(1, nid, 0, 0)
        self._commission_seq = seq
        sealed = suite.seal_response(ctx, atm.encode(result)[1:])
        self._respond(seg, node, apdu, h, bytes([atm.COMMISSION]) + sealed)
        self.stats["commissioned"] += 1

    def _apply(self, m: atm.Commission) -> None:
        port = self.port
        meter = port.meter
        meter.groups = list(m.groups)
        meter._apply_groups()
        old = port.suite
        if not (isinstance(old, LegacySuite) and old._keys == [m.key]):
            port.rekey(LegacySuite(m.key, PLC_ENVELOPE))
        self.carrier.domain = bytes(m.domain)

    # -- replies ------------------------------------------------------------------------
    def _respond(
        self,
        seg: Segment,
        node: Node,
        request: bytes,
        h: Sequence[Any],
        apdu: bytes,
        *,
        save: bool = True,
    ) -> None:
        """Answer the request APDU ``request`` with ``apdu``; ``save``: a
        repeat of the same request gets the same answer without effects."""
        out = _frame(
            node,
            lon.SubnetNode(h[4], h[5]),
            lon.Spdu(lon.SPDU_RESPONSE, h[11] & 0x0F, apdu),
            bytes(h[13]),
        )
        if save:
            self._saved[request] = apdu
            if len(self._saved) > 32:
                self._saved.pop(next(iter(self._saved)))
        seg.send(node, out)


def _frame(node: Node, dest: lon.Address, pdu: Any, domain: bytes = b"") -> bytes:
    me = node.address if node.address is not None else lon.SubnetNode(0, 0)
    return lon.encode_lpdu(lon.Lpdu(lon.Npdu(me.subnet, me.node, dest, pdu, domain)))
