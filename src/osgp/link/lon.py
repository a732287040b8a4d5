"""Power line: ISO/IEC 14908-1 (LonTalk) frames, CN/IP tunnelling, and the
OSGP envelope inside the APDU (docs/protocol.md §6.1, §6.2; Wireshark packet-lon.c,
lon-stack-dx lcs_network.c).

Layout (docs/protocol.md §6.1)::

    LPDU  hdr:1 (b7 priority, b6 alternate path, b5..0 delta backlog) | NPDU | CRC16 BE
    NPDU  b7..6 version, b5..4 PDU format (0 TPDU, 1 SPDU, 2 AuthPDU, 3 APDU),
          b3..2 address format, b1..0 domain length code (0,1,3,6 bytes)
          src subnet:1 | src node:1 (b7 selfield, b6..0 node) | destination | domain | PDU
    dest  fmt 0 broadcast  subnet:1 (0 = domain wide)
          fmt 1 multicast  group:1
          fmt 2a (source selfield 1) subnet:1 node:1;  2b (selfield 0) subnet:1 node:1 group member
          fmt 3 Neuron ID  subnet:1 NID:6
    selector bits (lon-stack-dx lcs_network.c NetworkLayerSend / NetworkLayerReceive, lcs_tsa.c):
          source node b7 = 1 in every format but 2b, 0 in 2b;  destination node b7 = 1 in
          2a and 2b (IZOT_RECEIVESN_SELFIELD; a receiver compares both destination bytes
          with its domain entry's subnet and node byte, whose b7 is the non-clone flag,
          1 for an ordinary node).  Wireshark packet-lon.c reads 2a/2b from the source b7
          and masks both node bytes with 0x7F; so do our decoders (captures from encoders
          that sent destination b7 = 0 decode alike).
    TPDU / SPDU  b7 auth, b6..4 type, b3..0 transaction number; REMINDER/REM-MSG: M_List len + list
    AuthPDU      b7..6 fmt, b5..4 type, b3..0 transaction; 8 bytes (+1 group byte if fmt = 1)
    CRC   poly 0x1021 MSB first, init FFFF, complemented, big-endian (CRC-16/GENIBUS)

The OSGP application message (request code .. sequence number .. digest) is
carried in the APDU according to :data:`PLC_PROFILE`, which is INFERRED.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Optional, Tuple, TypeVar, Union

from osgp import _backend, crypto
from osgp.errors import (
    ChecksumError,
    ConfigurationError,
    DecodeError,
    MalformedError,
    TruncatedError,
)
from osgp.link._cursor import Cursor, as_bytes

__all__ = [
    "Broadcast",
    "Group",
    "SubnetNode",
    "GroupAck",
    "NeuronId",
    "Address",
    "Tpdu",
    "Spdu",
    "AuthPdu",
    "Apdu",
    "Npdu",
    "Lpdu",
    "encode_npdu",
    "decode_npdu",
    "encode_lpdu",
    "decode_lpdu",
    "CnipHeader",
    "encode_cnip",
    "decode_cnip",
    "PlcProfile",
    "PLC_PROFILE",
    "DOMAIN_LENGTHS",
    "TPDU_ACKD",
    "TPDU_UNACKD_RPT",
    "TPDU_ACK",
    "TPDU_REMINDER",
    "TPDU_REM_MSG",
    "SPDU_REQUEST",
    "SPDU_RESPONSE",
    "SPDU_REMINDER",
    "SPDU_REM_MSG",
]

DOMAIN_LENGTHS = (0, 1, 3, 6)  # domain length code -> bytes (docs/protocol.md §6.1)
_DOMAIN_CODE = {n: code for code, n in enumerate(DOMAIN_LENGTHS)}
PDU_TPDU, PDU_SPDU, PDU_AUTH, PDU_APDU = 0, 1, 2, 3
TPDU_ACKD, TPDU_UNACKD_RPT, TPDU_ACK, TPDU_REMINDER, TPDU_REM_MSG = 0, 1, 2, 4, 5
SPDU_REQUEST, SPDU_RESPONSE, SPDU_REMINDER, SPDU_REM_MSG = 0, 2, 4, 5
_TPDU_TYPES = frozenset({0, 1, 2, 4, 5})
_SPDU_TYPES = frozenset({0, 2, 4, 5})
_frames, _ = _backend.load("frames")  # LonTalk header parse (native or twin)
_crc16 = crypto.crc16_lon
_build = tuple.__new__  # a record from decoded fields (in range by construction)


# -- records ------------------------------------------------------------------
# The frame types are NamedTuples: cheap to build per frame, immutable,
# hashable, with a dataclass's repr.  _record gives them a dataclass's
# equality too: equal only to the same class with equal fields (a bare
# NamedTuple equals any tuple of the same items, so Broadcast(0) == Group(0)).
# Fields are checked where a frame is encoded; decoding builds them unchecked.
_R = TypeVar("_R", bound=type)


def _eq(self: tuple, other: object) -> bool:
    return other.__class__ is self.__class__ and tuple.__eq__(self, other)


def _ne(self: tuple, other: object) -> bool:
    return not _eq(self, other)


def _record(cls: _R) -> _R:
    for name, fn in (("__eq__", _eq), ("__ne__", _ne), ("__hash__", tuple.__hash__)):
        setattr(cls, name, fn)
    return cls


# -- addresses ----------------------------------------------------------------
@_record
class Broadcast(NamedTuple):
    subnet: int = 0  # 0 = domain-wide

    @property
    def fmt(self) -> int:  # address format (docs/protocol.md §6.1)
        return 0


@_record
class Group(NamedTuple):
    group: int

    @property
    def fmt(self) -> int:  # address format (docs/protocol.md §6.1)
        return 1


@_record
class SubnetNode(NamedTuple):
    subnet: int
    node: int

    @property
    def fmt(self) -> int:  # address format (docs/protocol.md §6.1)
        return 2


@_record
class GroupAck(NamedTuple):
    """Format 2b: acknowledgement/response to a multicast (source selfield 0)."""

    subnet: int
    node: int
    group: int
    member: int

    @property
    def fmt(self) -> int:  # address format (docs/protocol.md §6.1)
        return 2


@_record
class NeuronId(NamedTuple):
    nid: bytes
    subnet: int = 0  # routing subnet

    @property
    def fmt(self) -> int:  # address format (docs/protocol.md §6.1)
        return 3


Address = Union[Broadcast, Group, SubnetNode, GroupAck, NeuronId]


def _width(what: str, v: Any, bits: int) -> ConfigurationError:
    return ConfigurationError(f"{what} must fit in {bits} bits, got {v}")


def _u(v: int, bits: int, what: str) -> int:
    if not 0 <= v < 1 << bits:
        raise _width(what, v, bits)
    return v


def _encode_dest(d: Address) -> Tuple[int, int, bytes]:
    """(address format, source node b7, destination bytes): the source b7 is
    0 only in format 2b, both node bytes of 2a/2b carry b7 = 1 (module doc)."""
    if isinstance(d, SubnetNode):
        subnet, node = d
        if not 0 <= subnet < 256:
            raise _width("subnet", subnet, 8)
        if not 0 <= node < 128:
            raise _width("node", node, 7)
        return 2, 0x80, bytes((subnet, 0x80 | node))
    if isinstance(d, GroupAck):
        subnet, node = _u(d.subnet, 8, "subnet"), _u(d.node, 7, "node")
        return (
            2,
            0,
            bytes((subnet, 0x80 | node, _u(d.group, 8, "group"), _u(d.member, 8, "member"))),
        )
    if isinstance(d, NeuronId):
        if len(d.nid) != 6:
            raise ConfigurationError("a Neuron ID is 6 bytes")
        return 3, 0x80, bytes((_u(d.subnet, 8, "subnet"),)) + bytes(d.nid)
    if isinstance(d, Broadcast):
        return 0, 0x80, bytes((_u(d.subnet, 8, "subnet"),))
    if isinstance(d, Group):
        return 1, 0x80, bytes((_u(d.group, 8, "group"),))
    raise ConfigurationError(f"not a LonTalk address: {d!r}")


# -- PDUs ---------------------------------------------------------------------
@_record
class Tpdu(NamedTuple):
    type: int
    trans: int
    apdu: bytes = b""
    auth: bool = False
    mlist: Optional[bytes] = None  # REMINDER / REM-MSG member list

    @property
    def kind(self) -> int:  # NPDU PDU format
        return PDU_TPDU


@_record
class Spdu(NamedTuple):
    type: int
    trans: int
    apdu: bytes = b""
    auth: bool = False
    mlist: Optional[bytes] = None

    @property
    def kind(self) -> int:  # NPDU PDU format
        return PDU_SPDU


@_record
class AuthPdu(NamedTuple):
    fmt: int  # address format of the original message
    type: int  # 0 challenge, 1 challenge-OMA, 2 reply, 3 reply-OMA
    trans: int
    value: bytes  # 8 bytes
    group: Optional[int] = None  # present when fmt = 1 (multicast)

    @property
    def kind(self) -> int:  # NPDU PDU format
        return PDU_AUTH


@_record
class Apdu(NamedTuple):
    data: bytes

    @property
    def kind(self) -> int:  # NPDU PDU format
        return PDU_APDU

    @property
    def code(self) -> int:
        return self.data[0] if self.data else -1


Pdu = Union[Tpdu, Spdu, AuthPdu, Apdu]


@_record
class Npdu(NamedTuple):
    src_subnet: int
    src_node: int
    dest: Address
    pdu: Pdu
    domain: bytes = b""
    version: int = 0


@_record
class Lpdu(NamedTuple):
    npdu: Npdu
    priority: bool = False
    alt_path: bool = False
    backlog: int = 0


def _encode_pdu(p: Pdu) -> Tuple[int, bytes]:
    """(NPDU PDU format, PDU bytes)."""
    if isinstance(p, (Spdu, Tpdu)):
        typ, trans, apdu, auth, mlist = p
        kind = PDU_SPDU if isinstance(p, Spdu) else PDU_TPDU
        if typ not in (_SPDU_TYPES if kind else _TPDU_TYPES):
            raise ConfigurationError(f"invalid {type(p).__name__} type {typ}")
        if not 0 <= trans < 16:
            raise _width("trans", trans, 4)
        head = (0x80 if auth else 0) | (typ << 4) | trans
        if typ < 4:  # no member list: header byte || APDU
            return kind, bytes((head,)) + apdu
        ml = bytes(mlist or b"")
        return kind, bytes((head, _u(len(ml), 8, "M_List length"))) + ml + bytes(apdu)
    if isinstance(p, Apdu):
        return PDU_APDU, bytes(p.data)
    if len(p.value) != 8:
        raise ConfigurationError("AuthPDU value is 8 bytes")
    b = bytes([(_u(p.fmt, 2, "fmt") << 6) | (_u(p.type, 2, "type") << 4) | _u(p.trans, 4, "trans")])
    b += bytes(p.value)
    if p.fmt == 1:
        b += bytes([_u(p.group or 0, 8, "group")])
    return PDU_AUTH, b


def _encode_npdu(n: Npdu, lead: int) -> bytes:
    """The LPDU header byte ``lead`` (-1: none) || NPDU."""
    src_subnet, src_node, dest, pdu, domain, version = n
    fmt, sel, addr = _encode_dest(dest)
    kind, body = _encode_pdu(pdu)
    dcode = _DOMAIN_CODE.get(len(domain))
    if dcode is None:
        raise ConfigurationError("domain id must be 0, 1, 3 or 6 bytes")
    if not 0 <= version < 4:
        raise _width("version", version, 2)
    if not 0 <= src_subnet < 256:
        raise _width("subnet", src_subnet, 8)
    if not 0 <= src_node < 128:
        raise _width("node", src_node, 7)
    b0 = version << 6 | kind << 4 | fmt << 2 | dcode
    if lead < 0:
        return bytes((b0, src_subnet, sel | src_node)) + addr + domain + body
    return bytes((lead, b0, src_subnet, sel | src_node)) + addr + domain + body


def encode_npdu(n: Npdu) -> bytes:
    return _encode_npdu(n, -1)


def _decode_pdu(c: Cursor, kind: int, fmt: int) -> Pdu:
    if kind == PDU_APDU:
        if c.remaining == 0:
            raise TruncatedError(layer="lon.apdu", offset=c.offset, needed=1, remaining=0)
        return Apdu(c.rest())
    b = c.u8()
    if kind == PDU_AUTH:
        t = (b >> 4) & 3
        value = c.take(8)
        grp = c.u8() if (b >> 6) == 1 else None
        c.done()
        return AuthPdu(b >> 6, t, b & 0x0F, value, grp)
    typ = (b >> 4) & 7
    if typ not in (_TPDU_TYPES if kind == PDU_TPDU else _SPDU_TYPES):
        raise c.malformed(f"reserved {'TPDU' if kind == PDU_TPDU else 'SPDU'} type {typ}", 1)
    ml = None
    if typ in (4, 5):
        ml = c.take(c.u8())
    cls = Tpdu if kind == PDU_TPDU else Spdu
    return cls(typ, b & 0x0F, c.rest(), bool(b & 0x80), ml)


def decode_npdu(data: Any, *, base: int = 0) -> Npdu:
    c = Cursor(data, "lon.npdu", base=base)
    b0 = c.u8()
    version, kind, fmt, dcode = b0 >> 6, (b0 >> 4) & 3, (b0 >> 2) & 3, b0 & 3
    if version != 0:
        raise c.malformed(f"unsupported protocol version {version}", 1)
    src_subnet = c.u8()
    sn = c.u8()
    sel, src_node = sn >> 7, sn & 0x7F
    dest: Address
    if fmt == 0:
        dest = Broadcast(c.u8())
    elif fmt == 1:
        dest = Group(c.u8())
    elif fmt == 2:
        s, nb = c.u8(), c.u8()  # destination node b7 masked (module doc)
        if sel:
            dest = SubnetNode(s, nb & 0x7F)
        else:
            dest = GroupAck(s, nb & 0x7F, c.u8(), c.u8())
    else:
        s = c.u8()
        dest = NeuronId(c.take(6), s)
    domain = c.take(DOMAIN_LENGTHS[dcode])
    c.layer = "lon.pdu"
    pdu = _decode_pdu(c, kind, fmt)
    return Npdu(src_subnet, src_node, dest, pdu, domain, version)


def encode_lpdu(lp: Lpdu, *, crc: bool = True) -> bytes:
    npdu, priority, alt_path, backlog = lp
    if not 0 <= backlog < 64:
        raise _width("backlog", backlog, 6)
    body = _encode_npdu(npdu, (0x80 if priority else 0) | (0x40 if alt_path else 0) | backlog)
    return body + _crc16(body).to_bytes(2, "big") if crc else body


_SESSION_PDU = (Tpdu, Spdu)  # indexed by the NPDU's PDU format (0 TPDU, 1 SPDU)


def decode_lpdu(data: Any, *, crc: bool = True) -> Lpdu:
    """``crc=False`` for CN/IP payloads, which carry no link CRC (docs/protocol.md §6.2,
    INFERRED)."""
    b = data if type(data) is bytes else as_bytes(data)
    # Fast path: the frames kernel parses the header (CRC, version, address,
    # domain, PDU type: the checks below, the destination node b7 masked); a
    # TPDU/SPDU of type 0-2 carries no member list, so the rest of the frame
    # is its APDU.  Anything else, and every error, takes the general path
    # (same result, same error).
    try:
        h = _frames.lon_parse(b, True, crc)
    except DecodeError:
        return _decode_lpdu(b, crc)
    # the kernel's fields, in LON_FIELDS order
    hdr, kind, fmt, _, src_subnet, src_node, sel, sub, node, grp, mem, ph, nid, dom, at, end = h
    typ = (ph >> 4) & 7
    if kind > PDU_SPDU or typ > 2:
        return _decode_lpdu(b, crc)
    dest: Address
    if fmt == 2:
        dest = _build(SubnetNode, (sub, node)) if sel else _build(GroupAck, (sub, node, grp, mem))
    elif fmt == 3:
        dest = _build(NeuronId, (nid, sub))
    elif fmt == 1:
        dest = _build(Group, (grp,))
    else:
        dest = _build(Broadcast, (sub,))
    pdu = _build(_SESSION_PDU[kind], (typ, ph & 0x0F, b[at + 1 : end], ph >= 0x80, None))
    npdu = _build(Npdu, (src_subnet, src_node, dest, pdu, dom, 0))
    return _build(Lpdu, (npdu, hdr >= 0x80, hdr & 0x40 != 0, hdr & 0x3F))


def _decode_lpdu(b: bytes, crc: bool) -> Lpdu:
    need = 4 + (2 if crc else 0)
    if len(b) < need:
        raise TruncatedError(layer="lon.lpdu", offset=0, needed=need, remaining=len(b))
    if crc:
        got = int.from_bytes(b[-2:], "big")
        want = _crc16(b[:-2])
        if got != want:
            raise ChecksumError(
                f"link CRC 0x{got:04X} != 0x{want:04X}", layer="lon.lpdu", offset=len(b) - 2
            )
        b = b[:-2]
    h = b[0]
    return Lpdu(decode_npdu(b[1:], base=1), bool(h & 0x80), bool(h & 0x40), h & 0x3F)


# -- CN/IP (EIA-852 / ISO/IEC 14908-4) ------------------------------------------
CNIP_HEADER = 20
CNIP_DATA = 0x01


@dataclass(frozen=True)
class CnipHeader:
    """CN/IP common header (docs/protocol.md §6.2, [WS-CNIP]); ``length`` is the whole
    packet (header + extension + payload)."""

    packet_type: int = CNIP_DATA
    version: int = 1
    session: int = 0
    sequence: int = 0
    timestamp: int = 0
    vendor: int = 0
    flags: int = 0  # b5 security, b4..0 protocol (0 = LonTalk)
    extension: bytes = b""


def encode_cnip(h: CnipHeader, payload: bytes) -> bytes:
    if len(h.extension) % 4:
        raise ConfigurationError("CN/IP extension header is whole 32-bit words")
    total = CNIP_HEADER + len(h.extension) + len(payload)
    if total > 0xFFFF:
        raise ConfigurationError("CN/IP packet longer than 65535 bytes")
    return (
        total.to_bytes(2, "big")
        + bytes([h.version, h.packet_type, len(h.extension) // 4, h.flags])
        + h.vendor.to_bytes(2, "big")
        + h.session.to_bytes(4, "big")
        + h.sequence.to_bytes(4, "big")
        + h.timestamp.to_bytes(4, "big")
        + h.extension
        + payload
    )


def decode_cnip(data: Any) -> Tuple[CnipHeader, bytes]:
    c = Cursor(data, "cnip")
    total = c.be(2)
    if total < CNIP_HEADER or total != len(c.buf):
        raise c.malformed(f"length field {total} does not match the {len(c.buf)}-byte packet", 2)
    version, ptype, ext, flags = c.u8(), c.u8(), c.u8(), c.u8()
    vendor, session, seq, ts = c.be(2), c.be(4), c.be(4), c.be(4)
    extension = c.take(4 * ext)
    return CnipHeader(ptype, version, session, seq, ts, vendor, flags, extension), c.rest()


# -- OSGP over PLC: the wire profile ----------------------------------------------
@dataclass(frozen=True)
class PlcProfile:
    """OSGP application messages on power line.  INFERRED throughout: the
    standard's PLC header is not public (docs/protocol.md §3.1, §10.1).

    * ``message_code``: None = the OSGP message is the APDU itself (its
      request code 0x30/0x3F/0x40/0x4F and response codes 0x00-0x0C take the
      APDU code position); a number = one extra leading code byte.
    * requests travel as SPDU REQUEST, responses as SPDU RESPONSE with the
      request's transaction number (ISO/IEC 14908-1 request/response service).
    * envelope: the MEP trailer (seq:4 + digest:8, response digest chained),
      osgp.security.suite.PLC_ENVELOPE.
    * ``max_apdu``: 95 envelope bytes (84-byte read / 75-byte write, docs/protocol.md §3.1) plus
      ``message_code``; ``max_proxy_apdu``: 102 (MAX_PROXY_DATA).
    * ``domain``: default domain id of the network.
    """

    name: str = "PLC"
    status: str = "INFERRED (docs/protocol.md §3.1, §6.1; §10.1)"
    message_code: Optional[int] = None
    max_apdu: int = 95
    max_proxy_apdu: int = 102
    domain: bytes = b""
    service_request: int = SPDU_REQUEST
    service_response: int = SPDU_RESPONSE

    def wrap(self, envelope: bytes) -> bytes:
        out = envelope if self.message_code is None else bytes([self.message_code]) + envelope
        if len(out) > self.max_apdu:
            raise ConfigurationError(f"APDU of {len(out)} bytes exceeds {self.max_apdu}")
        return out

    def unwrap(self, apdu: bytes) -> bytes:
        if self.message_code is None:
            return apdu
        if not apdu or apdu[0] != self.message_code:
            raise MalformedError(
                f"APDU code 0x{apdu[0] if apdu else 0:02X} is not the OSGP message code",
                layer="lon.apdu",
                offset=0,
            )
        return apdu[1:]


PLC_PROFILE = PlcProfile()
