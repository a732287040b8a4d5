"""Carriers: how one secured OSGP message travels on each link.

A carrier frames the bytes a security suite produced and deframes what
arrives; it never touches a port or a clock.  Client carriers
(:class:`MepCarrier`, :class:`OpticalCarrier`, :class:`PlcCarrier`) and device
carriers (:class:`MepDeviceCarrier`, :class:`OpticalDeviceCarrier`,
:class:`PlcDeviceCarrier`) share the :class:`Carrier` protocol.

``receive`` returns ``(bytes to send at once, items)``: an item is a received
message (bytes), an :class:`Alert`, or an :class:`~osgp.errors.OSGPError` the
link itself reports (a proxy chain failure).  Frames that are not for this
carrier are counted in ``drops`` by reason and never returned.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Dict, List, Optional, Protocol, Sequence, Tuple, Union

from osgp import _backend, crypto
from osgp.errors import OSGPError, ProtocolError
from osgp.link import lon, lon_proxy, mep, optical
from osgp.link.mep import Alert

__all__ = [
    "Carrier",
    "DeviceCarrier",
    "Alert",
    "ProxyFailed",
    "MepCarrier",
    "OpticalCarrier",
    "PlcCarrier",
    "MepDeviceCarrier",
    "OpticalDeviceCarrier",
    "PlcDeviceCarrier",
    "neighbour_key",
]

_frames, _ = _backend.load("frames")  # LonTalk header parse (native or twin)
# Repeaters' transmit timer: code 12 (1,024 ms) and 3 retries (INFERRED): one
# try must cover a request and its response on the medium, about 0.4 s each for
# 100 bytes at the 2.36 kbit/s effective rate of ETSI TS 103 908.
_PROXY_TX = lon_proxy.TxCtrl(12, 3)

Item = Union[bytes, Alert, OSGPError]
_NO_MEMBER_LIST = (lon.SPDU_REQUEST, lon.SPDU_RESPONSE)
_BYTES = [bytes((i,)) for i in range(256)]
_crc16_lon = crypto.crc16_lon


class Carrier(Protocol):
    """The link-layer half of a client session."""

    link: str  # "mep", "optical" or "plc"
    drops: Counter

    def frame(self, wire: bytes) -> bytes: ...

    def retransmit(self, last: bytes) -> bytes: ...

    def receive(self, data: bytes) -> Tuple[bytes, List[Item]]: ...

    def reset(self) -> None: ...


class DeviceCarrier(Protocol):
    """The link-layer half of a device session.  A serial carrier also has
    ``silence(gap)``: the line was quiet for ``gap`` seconds before the next
    bytes, so a partial frame older than the inter-byte timeout is dropped."""

    link: str
    drops: Counter

    def receive(self, data: bytes) -> Tuple[bytes, List[bytes]]: ...

    def frame(self, wire: bytes) -> bytes: ...


class ProxyFailed(ProtocolError):
    """An Annex G proxy chain reported failure (APDU 0x4C) at ``hop``."""

    def __init__(self, message: str, *, hop: int, count: int) -> None:
        super().__init__(message)
        self.hop, self.count = hop, count


class TransactionsBusy(ProtocolError):
    """Every 4-bit transaction number towards one neighbour is in use by an
    exchange still waiting for its answer (ISO/IEC 14908-1 transaction
    numbers): the frame must wait, it has not failed."""


# -- MEP ---------------------------------------------------------------------------
class MepCarrier:
    """MEP serial: 2-byte length framing, alerts (MEP guide p.9, p.17)."""

    link = "mep"

    def __init__(self, profile: mep.MepProfile = mep.PROFILE) -> None:
        self.profile = profile
        self.drops: Counter = Counter()
        self._reader = mep.FrameReader(profile)

    def frame(self, wire: bytes) -> bytes:
        return mep.frame(wire, self.profile)

    def retransmit(self, last: bytes) -> bytes:
        return last  # a retry resends the identical frame (MEP guide p.21)

    def receive(self, data: bytes) -> Tuple[bytes, List[Item]]:
        items: List[Any] = self._reader.feed(data)  # a new list of bodies and Alerts
        return b"", items

    def reset(self) -> None:
        self._reader.reset()


class MepDeviceCarrier:
    link = "mep"

    def __init__(self, profile: mep.MepProfile = mep.PROFILE) -> None:
        self.profile = profile
        self.drops: Counter = Counter()
        self._reader = mep.FrameReader(profile)

    def receive(self, data: bytes) -> Tuple[bytes, List[bytes]]:
        return b"", [x for x in self._reader.feed(data) if isinstance(x, bytes)]

    def frame(self, wire: bytes) -> bytes:
        return mep.frame(wire, self.profile)

    def silence(self, gap: float) -> None:
        # at least one byte per 50 ms inside a frame (MEP guide p.20)
        if gap * 1000.0 > self.profile.inter_byte_ms and self._reader.pending:
            self._reader.reset()
            self.drops["partial frame timed out"] += 1


# -- optical ---------------------------------------------------------------------------
class OpticalCarrier:
    """C12.18 packets with ACK/NAK and toggle-bit duplicate detection."""

    link = "optical"

    def __init__(self, profile: optical.OpticalProfile = optical.NEGOTIATED) -> None:
        self.profile = profile
        self.drops: Counter = Counter()
        self.layer = optical.PacketLayer(profile)

    def frame(self, wire: bytes) -> bytes:
        return self.layer.send(wire)

    def retransmit(self, last: bytes) -> bytes:
        return self.layer.timeout()

    def receive(self, data: bytes) -> Tuple[bytes, List[Item]]:
        tx, apdus = self.layer.receive(data)
        return tx, list(apdus)

    def reset(self) -> None:
        pass


class OpticalDeviceCarrier:
    """C12.18 device side: packets, and the PSEM service states
    (:class:`~osgp.link.optical.PsemDeviceState`) that decide what a request
    may do now and apply the negotiated packet size and count."""

    link = "optical"

    def __init__(
        self,
        profile: optical.OpticalProfile = optical.NEGOTIATED,
        psem: Optional[optical.PsemDeviceState] = None,
    ) -> None:
        self.profile = profile
        self.drops: Counter = Counter()
        self.layer = optical.PacketLayer(profile)
        self.psem = psem or optical.PsemDeviceState(
            max_packet_size=profile.packet_size, max_packets=profile.max_packets
        )
        self.layer.rx_limit = self.psem.max_packet_size

    def receive(self, data: bytes) -> Tuple[bytes, List[bytes]]:
        return self.layer.receive(data)

    def frame(self, wire: bytes) -> bytes:
        return self.psem.send(self.layer, wire)

    def silence(self, gap: float) -> None:
        # C12.18 timers (OpticalProfile): the channel traffic timeout ends the
        # session; the inter-character timeout drops a partial packet
        ms = gap * 1000.0
        if ms > self.profile.channel_traffic_timeout_ms:
            pending = not self.layer.done
            if self.psem.timeout() or pending:
                self.drops["session timed out"] += 1
            self.layer.restart()
        elif ms > self.profile.inter_char_timeout_ms and self.layer.drop_partial():
            self.drops["partial packet timed out"] += 1


# -- power line ----------------------------------------------------------------------------
def neighbour_key(subnet: int, node: int) -> int:
    """Router key of a LonTalk subnet/node (node without its selector bit)."""
    return (subnet << 7) | (node & 0x7F)


def _address_key(a: lon.Address) -> Optional[int]:
    return neighbour_key(a.subnet, a.node) if isinstance(a, lon.SubnetNode) else None


class PlcCarrier:
    """LonTalk, client side: the secured message in an APDU (PLC profile,
    INFERRED), sent as SPDU REQUEST; the response is the SPDU RESPONSE with the
    same transaction number from the node the request went to.  ``path``:
    repeaters (SubnetNode) for an Annex G proxy chain; the frame then goes to
    path[0] carrying 0x4D with path[1:], and the answer comes back from path[0].

    ``expected`` is what a router matches responses on: ``(source key or None,
    transaction number)`` while an exchange is outstanding.  ``tids``: where
    transaction numbers come from (a router hands out numbers that no other
    outstanding exchange to the same neighbour uses)."""

    link = "plc"

    def __init__(
        self,
        dest: lon.Address,
        *,
        src: Tuple[int, int] = (1, 1),
        profile: lon.PlcProfile = lon.PLC_PROFILE,
        path: Sequence[lon.SubnetNode] = (),
        crc: bool = True,
        proxy_tx: Optional[lon_proxy.TxCtrl] = None,
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
        self.proxy_tx = proxy_tx if proxy_tx is not None else _PROXY_TX
        self.drops: Counter = Counter()
        self.neighbour: lon.Address = self.path[0] if self.path else dest
        self.source_key = _address_key(self.neighbour)
        self.tids: Callable[[Optional[int], int], int] = _next_tid
        self.expected: Optional[Tuple[Optional[int], int]] = None
        self._trans = 0
        self._templates: Dict[Any, Tuple[bytes, int]] = {}
        self._last_template: Tuple[Any, Any, Any, Tuple[bytes, int]] = (None, None, None, (b"", 0))

    @property
    def hops(self) -> int:
        return len(self.path)

    def _template(self, dest: lon.Address) -> Tuple[bytes, int]:
        """(LPDU header + NPDU up to the SPDU byte, SPDU byte with trans 0):
        encode_lpdu's own output for an empty SPDU, computed once per
        destination (only the 4-bit transaction number differs between frames
        to one destination; ISO/IEC 14908-1, docs/protocol.md)."""
        last = self._last_template
        if last[0] is dest and last[1] is self.src and last[2] is self.profile:
            return last[3]  # the same objects as the last frame's: no hashing
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
        self._last_template = (dest, self.src, self.profile, t)
        return t

    def _target(self) -> lon_proxy.ProxyTarget:
        # Annex G target address types (LTEP ProxySicb, docs/protocol.md)
        d = self.dest
        if isinstance(d, lon.SubnetNode):
            return lon_proxy.ProxyTarget(1, bytes([d.subnet, d.node]))
        if isinstance(d, lon.NeuronId):
            return lon_proxy.ProxyTarget(2, bytes([d.subnet]) + bytes(d.nid))
        if isinstance(d, lon.Group):
            return lon_proxy.ProxyTarget(4, bytes([d.group]))
        return lon_proxy.ProxyTarget(3, bytes([getattr(d, "subnet", 0), 0]))

    def frame(self, wire: bytes) -> bytes:
        profile = self.profile
        if profile.message_code is None and len(wire) <= profile.max_apdu:
            apdu = wire  # PlcProfile.wrap with nothing to add or refuse, inlined
        else:
            apdu = profile.wrap(wire)
        if self.path:
            t = self._target()
            reps = tuple(lon_proxy.Repeater(r.node, r.subnet) for r in self.path[1:])
            apdu = lon_proxy.encode_proxy(
                lon_proxy.ProxyRequest(
                    reps, lon_proxy.Sicb(t.type, txctrl=self.proxy_tx), t, apdu, self.proxy_tx
                )
            )
        tids = self.tids
        if tids is _next_tid:
            trans = self._trans = (self._trans + 1) & 0x0F  # _next_tid, inlined
        else:
            trans = self._trans = tids(self.source_key, self._trans)
        self.expected = (self.source_key, trans)
        if profile.service_request in _NO_MEMBER_LIST:
            # template header || SPDU byte (trans in b3..0) || APDU
            last = self._last_template
            if last[0] is self.neighbour and last[1] is self.src and last[2] is profile:
                head, spdu = last[3]  # _template's own shortcut, inlined
            else:
                head, spdu = self._template(self.neighbour)
            body = head + _BYTES[spdu | trans] + apdu
            return body + _crc16_lon(body).to_bytes(2, "big") if self.crc else body
        npdu = lon.Npdu(
            self.src[0],
            self.src[1],
            self.neighbour,
            lon.Spdu(self.profile.service_request, self._trans, apdu),
            self.profile.domain,
        )
        return lon.encode_lpdu(lon.Lpdu(npdu), crc=self.crc)

    def retransmit(self, last: bytes) -> bytes:
        return last  # identical frame, same transaction number

    def receive(self, data: bytes) -> Tuple[bytes, List[Item]]:
        if type(data) is not bytes:
            data = bytes(data)
        # header parse by the frames kernel (CRC, version, address and domain
        # lengths, PDU type checked as decode_lpdu does)
        h = _frames.lon_parse(data, True, self.crc)
        return self.accept(data, h)

    def accept(self, data: bytes, h: Sequence[Any]) -> Tuple[bytes, List[Item]]:
        """Take a frame whose header the caller parsed (``lon_parse`` fields)."""
        hdr = h[11]  # SPDU byte: b7 auth, b6..4 type, b3..0 transaction
        if h[1] != lon.PDU_SPDU or (hdr >> 4) & 7 != self.profile.service_response:
            self.drops["not a response"] += 1
            return b"", []
        if self.expected is None:
            self.drops["not waiting"] += 1
            return b"", []
        src = (h[4] << 7) | (h[5] & 0x7F)  # neighbour_key of the source subnet/node
        if self.source_key is not None and src != self.source_key:
            self.drops["other source"] += 1
            return b"", []
        if hdr & 0x0F != self._trans:
            self.drops["stale transaction"] += 1
            return b"", []
        self.expected = None
        apdu = data[h[14] + 1 : h[15]]
        if self.path:
            r = lon_proxy.decode_proxy_response(apdu)
            if isinstance(r, lon_proxy.ProxyFailure):
                hop = len(self.path) - r.count
                return b"", [
                    ProxyFailed(
                        f"proxy chain failed at hop {hop} (count {r.count})",
                        hop=hop,
                        count=r.count,
                    )
                ]
            apdu = r
        if self.profile.message_code is None:
            return b"", [apdu]  # PlcProfile.unwrap with no code to check, inlined
        return b"", [self.profile.unwrap(apdu)]

    def reset(self) -> None:
        pass  # a late answer is still taken until the retry goes out

    def give_up(self) -> None:
        """The exchange is over without a response: stop expecting one."""
        self.expected = None


def _next_tid(neighbour: Optional[int], last: int) -> int:
    """The next 4-bit transaction number (ISO/IEC
    14908-1 legacy mode: a new number per new transaction)."""
    return (last + 1) & 0x0F


class PlcDeviceCarrier:
    """Answers an SPDU REQUEST with an SPDU RESPONSE (same transaction number)
    to the sender.  ``addresses``: what this device accepts (its SubnetNode
    and/or NeuronId); ``groups``: the groups it belongs to.

    A repeated request (the identical frame: same source, transaction number
    and content, as a client's retry is) is answered with the saved response
    and not served again, as the ISO/IEC 14908-1 request/response service's
    duplicate detection does."""

    link = "plc"

    def __init__(
        self,
        addresses: Sequence[lon.Address],
        *,
        profile: lon.PlcProfile = lon.PLC_PROFILE,
        crc: bool = True,
        groups: Sequence[int] = (),
    ) -> None:
        self.addresses, self.profile, self.crc = tuple(addresses), profile, crc
        self.groups = tuple(groups)
        self.domain: Optional[bytes] = None  # the domain commissioning assigned, if any
        self.drops: Counter = Counter()
        self._reply: Optional[Tuple[lon.Npdu, bool]] = None
        self._last_request = b""
        self._last_response = b""

    def _mine(self, d: lon.Address) -> bool:
        if isinstance(d, lon.SubnetNode):
            return any(d == a for a in self.addresses)
        if isinstance(d, lon.NeuronId):  # the subnet in format 3 routes, it does not identify
            return any(isinstance(a, lon.NeuronId) and a.nid == d.nid for a in self.addresses)
        if isinstance(d, lon.Group):
            return d.group in self.groups
        return isinstance(d, lon.Broadcast)

    def receive(self, data: bytes) -> Tuple[bytes, List[bytes]]:
        if data == self._last_request and self._last_response:
            self.drops["duplicate request"] += 1
            return self._last_response, []
        lp = lon.decode_lpdu(data, crc=self.crc)
        n = lp.npdu
        if not isinstance(n.pdu, lon.Spdu) or n.pdu.type != self.profile.service_request:
            self.drops["not a request"] += 1
            return b"", []
        if not self._mine(n.dest):
            self.drops["not addressed here"] += 1
            return b"", []
        apdu = n.pdu.apdu
        proxied = apdu[:1] == bytes([lon_proxy.PROXY])
        if proxied:
            apdu = lon_proxy.decode_proxy(apdu).apdu  # this device is the agent's target
        self._reply = (n, proxied)
        self._last_request, self._last_response = bytes(data), b""
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
        frame = lon.encode_lpdu(lon.Lpdu(out), crc=self.crc)
        self._last_response = frame
        return frame
