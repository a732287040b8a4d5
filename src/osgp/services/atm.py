"""Automated topology management (ATM): the reconstructed discovery and
commissioning messages, as pure codecs.

OSGP's Automated Topology Management, Automated Device Discovery and Fast
Commissioning Messages (ETSI TS 104 001 clause 4) have no public byte-level
format.  What is public is their design, in the Echelon patents US
2006/0085346, US 8,700,754 and US 9,755,906 (G. M. Riley, "Automated topology
discovery and management for electric meters"): a concentrator broadcasts a
discovery request addressed to a range of hashed Neuron IDs; meters in the
range answer with their route quality, including the signal strength of the
request as they received it; the concentrator picks first-level proxies from
hop count and both directions' signal strengths and tells them to broadcast
further discovery requests; and so on, level by level.  Everything below is
a reconstruction of that design (INFERRED; docs/discovery.md gives each
choice and its reason).

APDU codes.  ISO/IEC 14908-1 gives the first APDU byte ranges: 0x00-0x3F
application messages, 0x60-0x7F network management.  OSGP on power line
puts its C12.18 service codes in that byte (0x30-0x3F reads, 0x40-0x4F
writes, 0x00-0x0C responses) and 0x4C/0x4D proxies (Annex G), so the ATM
messages take free application codes 0x18-0x1C.  Giving a repeater its
subnet/node during discovery is exactly ISO/IEC 14908-1 *Update Domain*
(network management 0x63; success response 0x23, failure 0x03), so that
message keeps its standard code and the domain-table-entry layout.

Signal figures travel as signed 16-bit big-endian in 1/16 dB.  The 48-bit
Neuron ID hash is the 16-bit LonTalk CRC (ISO/IEC 14908-1 CRC-16, CCITT
polynomial) of its six bytes; a range is two inclusive 16-bit bounds.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

from osgp import crypto
from osgp.errors import ConfigurationError, MalformedError
from osgp.link._cursor import Cursor

__all__ = [
    "LAYER",
    "DISCOVER",
    "REPLY",
    "PROXY_DISCOVER",
    "REPORT",
    "COMMISSION",
    "UPDATE_DOMAIN",
    "UPDATE_DOMAIN_OK",
    "UPDATE_DOMAIN_FAIL",
    "UNCONFIGURED_ONLY",
    "AUTH_REFUSED",
    "MAX_ACKS",
    "MAX_APDU",
    "HASH_SPACE",
    "AtmProfile",
    "ATM_PROFILE",
    "nid_hash",
    "ack_tag",
    "Discover",
    "Reply",
    "ProxyAccepted",
    "ReportRequest",
    "Report",
    "UpdateDomain",
    "Commission",
    "CommissionResult",
    "encode",
    "decode",
    "decode_commission",
    "paginate",
]

LAYER = "atm"
DISCOVER = 0x18  # broadcast, unacknowledged
REPLY = 0x19  # unacknowledged, to the requester
PROXY_DISCOVER = 0x1A  # request/response: a repeater runs a round onward
REPORT = 0x1B  # request/response: a page of what a repeater heard
COMMISSION = 0x1C  # request/response, sealed under the factory (or current) key
UPDATE_DOMAIN = 0x63  # ISO/IEC 14908-1 network management
UPDATE_DOMAIN_OK = 0x23  # NM success response: 0x20 | (code & 0x1F)
UPDATE_DOMAIN_FAIL = 0x03  # NM failure response: code & 0x1F
AUTH_REFUSED = 0x0B  # COMMISSION answer when no key opens it (the OSGP 0x0B code)
UNCONFIGURED_ONLY = 0x01  # discovery flag: nodes with a subnet/node stay silent
CONFIGURED = 0x01  # reply flag: the node has a subnet/node
MAX_ACKS = 24  # 3-byte tags per discovery request (fits a 95-byte APDU)
MAX_APDU = 95  # PLC APDU limit (osgp.link.lon.PLC_PROFILE.max_apdu)
HASH_SPACE = 1 << 16
_DB = 16  # signal units per dB


@dataclass(frozen=True)
class AtmProfile:
    """The discovery and commissioning choices (all INFERRED; see the module
    docstring and docs/discovery.md)."""

    name: str = "ATM"
    discover: int = DISCOVER
    reply: int = REPLY
    proxy_discover: int = PROXY_DISCOVER
    report: int = REPORT
    commission: int = COMMISSION
    update_domain: int = UPDATE_DOMAIN
    hash: str = "CRC-16 (ISO/IEC 14908-1 LonTalk CRC) of the 6-byte Neuron ID"
    signal_unit_db: float = 1 / _DB
    max_acks: int = MAX_ACKS


ATM_PROFILE = AtmProfile()


def nid_hash(nid: bytes) -> int:
    """The 16-bit discovery hash of a 48-bit Neuron ID."""
    return crypto.crc16_lon(bytes(nid))


def ack_tag(nid: bytes) -> bytes:
    """The 3-byte tag a discovery request lists to silence a found node (the
    Neuron ID's last three bytes; within one hash range two nodes share a
    tag with odds of about 2^-24 per pair)."""
    return bytes(nid[3:6])


def _db(v: float) -> bytes:
    q = round(v * _DB)
    if not -32768 <= q <= 32767:
        raise ConfigurationError(f"signal figure {v} dB out of range")
    return q.to_bytes(2, "big", signed=True)


def _rdb(c: Cursor) -> float:
    return int.from_bytes(c.take(2), "big", signed=True) / _DB


def _u(v: int, lo: int, hi: int, what: str) -> int:
    if not isinstance(v, int) or not lo <= v <= hi:
        raise ConfigurationError(f"{what} must be {lo}..{hi}, got {v!r}")
    return v


# -- discovery ---------------------------------------------------------------------
@dataclass(frozen=True)
class Discover:
    """A discovery round: nodes whose hash is in ``lo..hi`` and whose tag is
    not in ``acks`` answer once, each in a random slot of ``slots`` slots of
    ``slot_ms``.  ``hops``: the hops this request has travelled (1 from the
    concentrator; a repeater at level k sends k + 1).  As a PROXY_DISCOVER
    body it tells a repeater to broadcast this round onward."""

    session: int
    hops: int
    lo: int
    hi: int
    slots: int
    slot_ms: int
    flags: int = 0
    acks: Tuple[bytes, ...] = ()

    def covers(self, nid: bytes) -> bool:
        return self.lo <= nid_hash(nid) <= self.hi and ack_tag(nid) not in self.acks

    @property
    def window_s(self) -> float:
        return self.slots * self.slot_ms / 1000.0


@dataclass(frozen=True)
class Reply:
    """A node's answer to a discovery round (``ssi``/``margin``: the request
    as the node heard it, dB) or, with ``ssi_in``/``margin_in`` (the answer
    as the repeater heard it), one entry of a repeater's report."""

    nid: bytes
    hops: int
    ssi: float
    margin: float
    serial: str = ""
    configured: bool = False
    ssi_in: Optional[float] = None
    margin_in: Optional[float] = None


@dataclass(frozen=True)
class ProxyAccepted:
    """A repeater's immediate answer to PROXY_DISCOVER: its round runs for
    ``window_ms``; ``status`` 0 accepted, 1 refused (a round is under way)."""

    status: int
    window_ms: int


@dataclass(frozen=True)
class ReportRequest:
    session: int
    page: int


@dataclass(frozen=True)
class Report:
    """Page ``page`` of the ``total`` answers a repeater heard in its last
    round of ``session``."""

    session: int
    total: int
    page: int
    entries: Tuple[Reply, ...]


@dataclass(frozen=True)
class UpdateDomain:
    """ISO/IEC 14908-1 Update Domain: domain table entry ``index`` = domain
    id (``domain``, 0..6 bytes, padded to 6), subnet, node, authentication
    key (6 bytes).  The reply is 0x23 (done) or 0x03 (refused)."""

    subnet: int
    node: int
    domain: bytes = b""
    index: int = 0
    key: bytes = bytes(6)


@dataclass(frozen=True)
class Commission:
    """The fast commissioning message body: domain, subnet/node, group
    memberships (1..10 groups, 0..255) and the new 12-byte OMA key.  On the
    wire it is sealed and encrypted by the legacy suite under the key the
    meter holds (osgp.security.suite, PLC envelope)."""

    subnet: int
    node: int
    groups: Tuple[int, ...] = ()
    key: bytes = b""
    domain: bytes = b""


@dataclass(frozen=True)
class CommissionResult:
    """``status``: 0 applied, 1 refused (address), 2 malformed; the node's
    Neuron ID and the address it now has."""

    status: int
    nid: bytes
    subnet: int
    node: int


def _discover_body(m: Discover) -> bytes:
    if len(m.acks) > MAX_ACKS or any(len(a) != 3 for a in m.acks):
        raise ConfigurationError(f"at most {MAX_ACKS} acknowledgement tags of 3 bytes")
    if m.lo > m.hi:
        raise ConfigurationError("hash range: lo > hi")
    return (
        bytes(
            [
                _u(m.session, 0, 255, "session"),
                _u(m.hops, 1, 16, "hops"),
            ]
        )
        + _u(m.lo, 0, 0xFFFF, "lo").to_bytes(2, "big")
        + _u(m.hi, 0, 0xFFFF, "hi").to_bytes(2, "big")
        + bytes([_u(m.slots, 1, 255, "slots")])
        + _u(m.slot_ms, 1, 0xFFFF, "slot_ms").to_bytes(2, "big")
        + bytes([_u(m.flags, 0, 255, "flags"), len(m.acks)])
        + b"".join(m.acks)
    )


def _reply_body(r: Reply, entry: bool) -> bytes:
    s = r.serial.encode("ascii", "replace")
    if len(r.nid) != 6 or len(s) > 16:
        raise ConfigurationError("reply: 6-byte Neuron ID, serial of at most 16 characters")
    out = bytes(r.nid) + bytes([_u(r.hops, 1, 16, "hops")]) + _db(r.ssi) + _db(r.margin)
    if entry:
        out += _db(r.ssi_in or 0.0) + _db(r.margin_in or 0.0)
    return out + bytes([CONFIGURED if r.configured else 0, len(s)]) + s


def encode(m: Any, *, session: int = 0, proxy: bool = False) -> bytes:
    """The APDU of ``m``.  ``session``: for a :class:`Reply` (its round's
    session); ``proxy``: a :class:`Discover` as PROXY_DISCOVER."""
    if isinstance(m, Discover):
        return bytes([PROXY_DISCOVER if proxy else DISCOVER]) + _discover_body(m)
    if isinstance(m, Reply):
        return bytes([REPLY, _u(session, 0, 255, "session")]) + _reply_body(m, False)
    if isinstance(m, ProxyAccepted):
        return bytes([PROXY_DISCOVER, _u(m.status, 0, 255, "status")]) + _u(
            m.window_ms, 0, 0xFFFF, "window_ms"
        ).to_bytes(2, "big")
    if isinstance(m, ReportRequest):
        return bytes([REPORT, _u(m.session, 0, 255, "session"), _u(m.page, 0, 255, "page")])
    if isinstance(m, Report):
        body = b"".join(_reply_body(e, True) for e in m.entries)
        head = bytes([REPORT, m.session, _u(m.total, 0, 255, "total"), m.page, len(m.entries)])
        return head + body
    if isinstance(m, UpdateDomain):
        if len(m.domain) > 6 or len(m.key) != 6:
            raise ConfigurationError("update domain: domain id 0..6 bytes, key 6 bytes")
        return (
            bytes([UPDATE_DOMAIN, _u(m.index, 0, 1, "domain index")])
            + bytes(m.domain).ljust(6, b"\0")
            + bytes([_u(m.subnet, 1, 255, "subnet"), _u(m.node, 1, 127, "node"), len(m.domain)])
            + bytes(m.key)
        )
    if isinstance(m, Commission):
        if len(m.key) != 12 or len(m.domain) > 6 or len(m.groups) > 10:
            raise ConfigurationError("commission: 12-byte key, domain 0..6 bytes, 0..10 groups")
        return (
            bytes([len(m.domain)])
            + bytes(m.domain)
            + bytes([_u(m.subnet, 1, 255, "subnet"), _u(m.node, 1, 127, "node"), len(m.groups)])
            + bytes(_u(g, 0, 255, "group") for g in m.groups)
            + bytes(m.key)
        )
    if isinstance(m, CommissionResult):
        if len(m.nid) != 6:
            raise ConfigurationError("commission result: 6-byte Neuron ID")
        return bytes([COMMISSION, m.status]) + bytes(m.nid) + bytes([m.subnet, m.node])
    raise ConfigurationError(f"not an ATM message: {type(m).__name__}")


# session, hops, lo, hi, slots, slot_ms, flags, tag count (the layout of _discover_body)
_DISCOVER_HEAD = struct.Struct(">BBHHBHBB")


def _decode_discover(c: Cursor) -> Discover:
    # Every meter in reach decodes every discovery request, so a well-formed
    # one is unpacked in one step; anything else takes the field-by-field
    # reads below, which name the field and offset at fault.
    buf, pos, end = c.buf, c.pos, c.end
    if end - pos >= 11:
        session, hops, lo, hi, slots, slot_ms, flags, n = _DISCOVER_HEAD.unpack_from(buf, pos)
        if (
            end - pos == 11 + 3 * n
            and n <= MAX_ACKS
            and 1 <= hops <= 16
            and lo <= hi
            and slots
            and slot_ms
        ):
            c.pos = end
            tags = range(pos + 11, end, 3)
            return Discover(
                session, hops, lo, hi, slots, slot_ms, flags, tuple(buf[i : i + 3] for i in tags)
            )
    return _decode_discover_fields(c)


def _decode_discover_fields(c: Cursor) -> Discover:
    session, hops = c.u8(), c.u8()
    lo, hi = c.be(2), c.be(2)
    slots, slot_ms, flags, n = c.u8(), c.be(2), c.u8(), c.u8()
    if not 1 <= hops <= 16 or lo > hi or slots == 0 or slot_ms == 0:
        raise c.malformed("discovery: hops 1..16, lo <= hi, slots and slot length non-zero", 9)
    if n > MAX_ACKS:
        raise c.malformed(f"discovery: {n} acknowledgement tags, at most {MAX_ACKS}", 1)
    acks = tuple(c.take(3) for _ in range(n))
    c.done()
    return Discover(session, hops, lo, hi, slots, slot_ms, flags, acks)


def _decode_reply(c: Cursor, entry: bool) -> Reply:
    nid, hops = c.take(6), c.u8()
    if not 1 <= hops <= 16:
        raise c.malformed(f"hop count {hops} outside 1..16", 1)
    ssi, margin = _rdb(c), _rdb(c)
    ssi_in = margin_in = None
    if entry:
        ssi_in, margin_in = _rdb(c), _rdb(c)
    flags, n = c.u8(), c.u8()
    if n > 16:
        raise c.malformed(f"serial of {n} bytes, at most 16", 1)
    raw = c.take(n)
    if not raw.isascii():
        raise c.malformed("serial is not ASCII", n)
    return Reply(
        nid, hops, ssi, margin, raw.decode("ascii"), bool(flags & CONFIGURED), ssi_in, margin_in
    )


def decode(apdu: Any, *, response: bool = False, base: int = 0) -> Tuple[int, Any]:
    """``(code, message)`` of an ATM APDU.  ``response``: the APDU answers a
    request (PROXY_DISCOVER and REPORT share their code with the request;
    for COMMISSION the request body is sealed, see :class:`Commission`).
    Returns the session number with a REPLY as ``(REPLY, (session, Reply))``.
    Bad input raises a :class:`~osgp.errors.DecodeError` naming layer
    ``atm`` and the offset."""
    c = Cursor(apdu, LAYER, base=base)
    code = c.u8()
    if code == DISCOVER or (code == PROXY_DISCOVER and not response):
        return code, _decode_discover(c)
    if code == REPLY:
        session = c.u8()
        r = _decode_reply(c, False)
        c.done()
        return code, (session, r)
    if code == PROXY_DISCOVER:
        m: Any = ProxyAccepted(c.u8(), c.be(2))
    elif code == REPORT and not response:
        m = ReportRequest(c.u8(), c.u8())
    elif code == REPORT:
        session, total, page, n = c.u8(), c.u8(), c.u8(), c.u8()
        entries = tuple(_decode_reply(c, True) for _ in range(n))
        m = Report(session, total, page, entries)
    elif code == UPDATE_DOMAIN:
        index = c.u8()
        dom = c.take(6)
        subnet, node, dlen = c.u8(), c.u8(), c.u8()
        key = c.take(6)
        if dlen not in (0, 1, 3, 6) or index > 1 or subnet == 0 or not 1 <= node <= 127:
            raise c.malformed("update domain: length 0/1/3/6, index 0/1, subnet/node", 9)
        m = UpdateDomain(subnet, node, dom[:dlen], index, key)
    elif code in (UPDATE_DOMAIN_OK, UPDATE_DOMAIN_FAIL):
        m = code == UPDATE_DOMAIN_OK
    elif code == COMMISSION and response:
        m = CommissionResult(c.u8(), c.take(6), c.u8(), c.u8())
    elif code == COMMISSION:
        m = c.rest()  # the sealed body: open it with the suite, then decode_commission
    else:
        raise MalformedError(
            f"APDU code 0x{code:02X} is not an ATM message", layer=LAYER, offset=base
        )
    c.done()
    return code, m


def decode_commission(body: Any, *, base: int = 0) -> Commission:
    """The opened body of a COMMISSION request."""
    c = Cursor(body, LAYER, base=base)
    dlen = c.u8()
    if dlen not in (0, 1, 3, 6):
        raise c.malformed(f"domain length {dlen} is not 0, 1, 3 or 6", 1)
    domain = c.take(dlen)
    subnet, node, n = c.u8(), c.u8(), c.u8()
    if subnet == 0 or not 1 <= node <= 127 or n > 10:
        raise c.malformed("commission: subnet 1..255, node 1..127, at most 10 groups", 3)
    groups = tuple(c.take(n))
    key = c.take(12)
    c.done()
    return Commission(subnet, node, groups, key, domain)


def paginate(entries: List[Reply], limit: int = MAX_APDU) -> List[Tuple[Reply, ...]]:
    """Split report entries into pages whose APDU fits ``limit`` bytes."""
    pages: List[Tuple[Reply, ...]] = []
    page: List[Reply] = []
    size = 5
    for e in entries:
        n = len(_reply_body(e, True))
        if page and size + n > limit:
            pages.append(tuple(page))
            page, size = [], 5
        page.append(e)
        size += n
    pages.append(tuple(page))
    return pages
