"""One capture's frames to decoded tables: pair, look up keys, verify,
reassemble, decode.

Stages (docs/batch.md):

1. LonTalk header parse of every frame in one batch call (``frames`` kernel).
2. Pairing: an SPDU RESPONSE from B to A with transaction number t answers
   the latest unanswered SPDU REQUEST from A to B with t (ISO/IEC 14908-1
   request/response service).  A request identical to the one before it
   under the same key is a retransmission; an exchange identical to the one
   before it (a retry the device answered from its saved response) is a
   duplicate.  Requests whose APDU is an Annex G proxy command (0x4D) and
   their responses are relay legs; the others are end-to-end exchanges with
   the request's destination as the device.
3. Keys (:class:`~osgp.batch.keys.KeyLookup`), then the legacy envelope
   (``PLC_ENVELOPE``, INFERRED): request ``code args seq:4 || D(key, ...)``,
   response ``data || D(key, request plaintext || data)``, verified in
   batches of OMA digests (RC4-encrypted exchanges through the suite).
4. Sequence numbers per device must grow (a repeat or a step back is a
   replay); a 0x0C response is a sequence error, other non-zero codes
   device errors.
5. Reads to table images: full reads as they are, partial reads placed at
   their offsets (a run starts at offset 0; a gap makes it truncated).
6. Decoding with the device's latest dimension tables: BT23 registers
   (columnar), BT64 load profile (BT61-BT63, ET21), BT74 event log (BT71).

Every frame ends in exactly one fate of :attr:`Report.frames`, and every
exchange or image that yields no rows is a rejection with a reason.
"""

from __future__ import annotations

import hmac
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from osgp import _backend, crypto, loadprofile, tables
from osgp.batch.archive import Frames
from osgp.batch.keys import Device, KeyLookup
from osgp.errors import AuthenticationError, DecodeError, OSGPError
from osgp.link import lon, lon_proxy
from osgp.security.suite import AUTH_FAILURE, INVALID_SEQUENCE, PLC_ENVELOPE, LegacySuite
from osgp.services import messages

__all__ = ["Report", "Decoded", "decode_frames", "REASONS", "FATES", "MAX_EXAMPLES"]

_frames, _ = _backend.load("frames")

#: What became of each frame (their counts add up to the frames read).
FATES = (
    "exchange",  # request or response of a paired end-to-end exchange
    "relayed",  # a leg of an Annex G proxy chain (request 0x4D and its response)
    "retransmission",  # identical to the frame before it under the same key
    "duplicate",  # an exchange identical to the one before it
    "unpaired_request",
    "unpaired_response",
    "not_addressed",  # an SPDU to a group, broadcast or Neuron ID: no pairing key
    "other_pdu",  # TPDU, AuthPDU, APDU, SPDU reminders
    "malformed",  # LonTalk header does not parse
)
#: Why an exchange, read or image gave no rows.
REASONS = (
    "truncated",  # a capture ending inside a block, a short envelope, an image with a gap
    "bad_block",  # a pcapng block or pcap record dropped by a non-strict walk
    "unpaired",  # request without response or response without request (frames above)
    "unknown_device",  # no key for the request's destination
    "digest",  # request or response digest does not verify
    "replay",  # request sequence number not above the device's last one
    "sequence",  # the device answered 0x0C (invalid sequence number)
    "device_error",  # any other non-zero response code
    "malformed",  # a request or response that does not parse as a service message
    "missing_context",  # an image whose dimension tables were not read before it
    "undecodable",  # an image the table or load-profile decoder rejects
)
MAX_EXAMPLES = 3
_DIGEST = PLC_ENVELOPE.digest_size
_SEQ = PLC_ENVELOPE.seq_size
_NS = 1_000_000_000


@dataclass
class Report:
    """Counts and a few examples of everything a run saw."""

    files: int = 0
    bytes: int = 0
    packets: int = 0
    capture: Counter = field(default_factory=Counter)  # walker and CN/IP counts
    frames: Counter = field(default_factory=Counter)  # FATES
    exchanges: int = 0
    verified: int = 0
    writes: int = 0
    images: int = 0
    rejected: Counter = field(default_factory=Counter)  # REASONS
    examples: Dict[str, List[str]] = field(default_factory=dict)
    rows: Counter = field(default_factory=Counter)  # per dataset
    seconds: float = 0.0

    def reject(self, reason: str, example: str, n: int = 1) -> None:
        self.rejected[reason] += n
        ex = self.examples.setdefault(reason, [])
        if len(ex) < MAX_EXAMPLES:
            ex.append(example)

    def merge(self, other: Report) -> Report:
        for name in ("files", "bytes", "packets", "exchanges", "verified", "writes", "images"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.seconds = max(self.seconds, other.seconds)
        for name in ("capture", "frames", "rejected", "rows"):
            getattr(self, name).update(getattr(other, name))
        for reason, ex in other.examples.items():
            mine = self.examples.setdefault(reason, [])
            mine.extend(ex[: MAX_EXAMPLES - len(mine)])
        return self

    def as_dict(self) -> Dict[str, Any]:
        return {
            "files": self.files,
            "bytes": self.bytes,
            "packets": self.packets,
            "capture": dict(self.capture),
            "frames": dict(self.frames),
            "exchanges": self.exchanges,
            "verified": self.verified,
            "writes": self.writes,
            "images": self.images,
            "rejected": dict(self.rejected),
            "examples": {k: list(v) for k, v in self.examples.items()},
            "rows": dict(self.rows),
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> Report:
        r = cls()
        for k, v in d.items():
            setattr(r, k, Counter(v) if isinstance(getattr(r, k), Counter) else v)
        return r


@dataclass
class Image:
    device: Device
    table: int
    ts_ns: int  # capture time of the response that completed it
    data: bytes


@dataclass
class Decoded:
    """What one capture gave: table images and rows per dataset (column
    name -> numpy array or list), before Arrow."""

    images: List[Image]
    registers: Dict[str, list]
    load_profile: Dict[str, list]
    events: Dict[str, list]


# ---- pairing ----------------------------------------------------------------------------------


def _addr(subnet: np.ndarray, node: np.ndarray) -> np.ndarray:
    # subnet (8 bits) and node (7 bits; ISO/IEC 14908-1 address byte b6..0)
    return (subnet.astype(np.int64) << 7) | (node.astype(np.int64) & 0x7F)


def _fingerprints(fr: Frames) -> np.ndarray:
    """Per frame: length, byte sum and position-weighted byte sum in one
    int64 triple-hash (equal frames have equal fingerprints; the converse is
    checked byte for byte)."""
    n = len(fr)
    if not n:
        return np.zeros(0, dtype=np.int64)
    starts = fr.bounds[:-1]
    lengths = np.diff(fr.bounds)
    d = fr.data[: fr.bounds[-1]].astype(np.int64)
    pos = np.arange(len(d), dtype=np.int64) - np.repeat(starts, lengths) + 1
    s1 = np.add.reduceat(d, starts)
    s2 = np.add.reduceat(d * pos, starts)
    return (lengths << 48) ^ (s1 << 24) ^ s2


def _same_bytes(fr: Frames, fp: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Frames a[i] and b[i] hold the same bytes (fingerprints compared first)."""
    out = fp[a] == fp[b]
    for j in np.flatnonzero(out):
        out[j] = fr.frame(int(a[j])) == fr.frame(int(b[j]))
    return out


def pair(fr: Frames, hdr: np.ndarray, ok: np.ndarray, report: Report) -> np.ndarray:
    """(request index, response index) of every exchange and relay leg, in
    request order; every frame's fate counted in ``report.frames``."""
    n = len(fr)
    fate = np.full(n, -1, dtype=np.int8)
    f = {name: i for i, name in enumerate(FATES)}
    fate[~ok] = f["malformed"]
    spdu = ok & (hdr["pdu_fmt"] == lon.PDU_SPDU)
    kind = (hdr["pdu_hdr"] >> 4) & 7  # SPDU byte: b6..4 type, b3..0 transaction
    trans = (hdr["pdu_hdr"] & 0x0F).astype(np.int64)
    # subnet/node addressing: address format 2 with the selector bit set
    unicast = (hdr["addr_fmt"] == 2) & (hdr["selfield"] == 1)
    is_req = spdu & (kind == lon.SPDU_REQUEST)
    is_resp = spdu & (kind == lon.SPDU_RESPONSE)
    fate[ok & ~is_req & ~is_resp] = f["other_pdu"]
    fate[(is_req | is_resp) & ~unicast] = f["not_addressed"]
    is_req &= unicast
    is_resp &= unicast
    src = _addr(hdr["src_subnet"], hdr["src_node"])
    dst = _addr(hdr["dest_subnet"], hdr["dest_node"])
    # one key per exchange: (requester, responder, transaction number)
    key = np.where(is_req, (src << 19) | (dst << 4) | trans, (dst << 19) | (src << 4) | trans)
    ev = np.flatnonzero(is_req | is_resp)
    ev = ev[np.argsort(key[ev], kind="stable")]
    fp = _fingerprints(fr)
    # retransmissions: same key, same kind, same bytes as the event before
    k, r = key[ev], is_req[ev]
    cand = np.flatnonzero((k[1:] == k[:-1]) & (r[1:] == r[:-1])) + 1
    rep = cand[_same_bytes(fr, fp, ev[cand], ev[cand - 1])] if len(cand) else cand
    fate[ev[rep]] = np.where(r[rep], f["retransmission"], f["duplicate"])
    keep = np.ones(len(ev), dtype=bool)
    keep[rep] = False
    ev = ev[keep]
    k, r = key[ev], is_req[ev]
    # a response pairs with the request just before it under its key
    j = np.flatnonzero(~r[1:] & r[:-1] & (k[1:] == k[:-1])) + 1
    req, resp = ev[j - 1], ev[j]
    order = np.argsort(req, kind="stable")
    req, resp = req[order], resp[order]
    # duplicate exchanges: the pair before under the same key, byte for byte
    pk = key[req]
    byk = np.lexsort((req, pk))
    prev_same = np.zeros(len(req), dtype=bool)
    if len(req) > 1:
        a, b = byk[1:], byk[:-1]
        same = pk[a] == pk[b]
        idx = np.flatnonzero(same)
        same[idx] = _same_bytes(fr, fp, req[a[idx]], req[b[idx]]) & _same_bytes(
            fr, fp, resp[a[idx]], resp[b[idx]]
        )
        prev_same[a[same]] = True
    fate[req[prev_same]] = f["duplicate"]
    fate[resp[prev_same]] = f["duplicate"]
    req, resp = req[~prev_same], resp[~prev_same]
    relay = np.zeros(len(req), dtype=bool)
    starts = fr.bounds[req] + hdr["pdu_offset"][req].astype(np.int64) + 1
    has_apdu = starts < fr.bounds[req] + hdr["pdu_end"][req].astype(np.int64)
    relay[has_apdu] = fr.data[starts[has_apdu]] == lon_proxy.PROXY
    fate[req[relay]] = f["relayed"]
    fate[resp[relay]] = f["relayed"]
    fate[req[~relay]] = f["exchange"]
    fate[resp[~relay]] = f["exchange"]
    left = fate == -1
    fate[left & is_req] = f["unpaired_request"]
    fate[left & is_resp] = f["unpaired_response"]
    counts = np.bincount(fate, minlength=len(FATES))
    for i, name in enumerate(FATES):
        if counts[i]:
            report.frames[name] += int(counts[i])
    for name in ("unpaired_request", "unpaired_response"):
        idx = np.flatnonzero(fate == f[name])
        for i in idx[:MAX_EXAMPLES]:
            report.reject("unpaired", _example(fr, hdr, int(i), name.replace("_", " ")), 0)
        report.rejected["unpaired"] += len(idx)
    return np.stack([req[~relay], resp[~relay]], axis=1)


def _example(fr: Frames, hdr: np.ndarray, i: int, what: str) -> str:
    h = hdr[i]
    return (
        f"{_iso(int(fr.ts_ns[i]))} frame {i} ({h['src_subnet']}.{h['src_node'] & 0x7F} -> "
        f"{h['dest_subnet']}.{h['dest_node'] & 0x7F}): {what}"
    )


def _iso(ts_ns: int) -> str:
    return str(np.datetime64(ts_ns, "ns"))[:23] + "Z"


# ---- verification and service messages ---------------------------------------------------------


@dataclass
class _Exchange:
    device: Device
    ts_ns: int  # the response's capture time
    request: bytes  # envelope (APDU) of the request
    response: bytes
    key: bytes = b""
    plain_request: bytes = b""  # code args seq:4
    plain_response: bytes = b""


def _apdu(fr: Frames, hdr: np.ndarray, i: int) -> bytes:
    start = int(fr.bounds[i])
    return fr.data[start + int(hdr["pdu_offset"][i]) + 1 : start + int(hdr["pdu_end"][i])].tobytes()


def verify(exchanges: List[_Exchange], report: Report) -> List[_Exchange]:
    """The exchanges whose request and response digests verify, their
    plaintexts filled in; digests in batches per key size."""
    ok: List[_Exchange] = []
    short = [
        x for x in exchanges if len(x.request) < 1 + _SEQ + _DIGEST or len(x.response) < 1 + _DIGEST
    ]
    for x in short:
        report.reject("truncated", f"{_iso(x.ts_ns)} {x.device}: envelope shorter than its trailer")
    full = [x for x in exchanges if x not in short] if short else exchanges
    by_size: Dict[int, List[_Exchange]] = defaultdict(list)
    for x in full:
        by_size[len(x.key)].append(x)
    for group in by_size.values():
        keys = [x.key for x in group]
        try:
            got = crypto.oma_digest_many(keys, [x.request[:-_DIGEST] for x in group])
        except OSGPError as exc:  # a key of a size the digest does not take
            for x in group:
                report.reject("unknown_device", f"{x.device}: key unusable ({exc})")
            continue
        plain_ok = []
        for x, d in zip(group, got):
            if hmac.compare_digest(d, x.request[-_DIGEST:]):
                x.plain_request = x.request[:-_DIGEST]
                plain_ok.append(x)
            elif _open_encrypted(x):
                ok.append(x)
            else:
                report.reject("digest", f"{_iso(x.ts_ns)} {x.device}: request digest")
        got = crypto.oma_digest_many(
            [x.key for x in plain_ok],
            [x.plain_request + x.response[:-_DIGEST] for x in plain_ok],
        )
        for x, d in zip(plain_ok, got):
            body = x.response[:-_DIGEST]
            if hmac.compare_digest(d, x.response[-_DIGEST:]) or body == bytes([AUTH_FAILURE]):
                # 0x0B travels with a trailer that cannot chain (suite.py, INFERRED)
                x.plain_response = body
                ok.append(x)
            else:
                report.reject("digest", f"{_iso(x.ts_ns)} {x.device}: response digest")
    report.verified += len(ok)
    return ok


def _open_encrypted(x: _Exchange) -> bool:
    """An RC4-encrypted exchange, through the suite itself (rare: one call each)."""
    suite = LegacySuite(x.key, PLC_ENVELOPE)
    try:
        _, _, ctx = suite.open_request(x.request)
        if not ctx.encrypted:
            return False
        x.plain_response = suite.open_response(ctx, x.response)
    except (AuthenticationError, DecodeError):
        return False
    x.plain_request = ctx.request_plain
    return True


def _request(apdu: bytes) -> Any:
    """The service request of a plaintext APDU; reads parsed in place
    (30 table:2 / 3F table:2 offset:3 count:2, messages.py), the rest by
    messages.decode_request."""
    if len(apdu) == 3 and apdu[0] == messages.FULL_READ:
        return messages.FullRead(int.from_bytes(apdu[1:3], "big"))
    if len(apdu) == 8 and apdu[0] == messages.PARTIAL_READ:
        return messages.PartialRead(
            int.from_bytes(apdu[1:3], "big"),
            int.from_bytes(apdu[3:6], "big"),
            int.from_bytes(apdu[6:8], "big"),
        )
    return messages.decode_request(apdu, messages.PLC_SERVICES)


@dataclass
class _Read:
    device: Device
    table: int
    offset: Optional[int]  # None: a full read
    data: bytes
    ts_ns: int


def to_reads(exchanges: Sequence[_Exchange], report: Report) -> List[_Read]:
    """Successful table reads of verified exchanges, in capture order; replays,
    sequence and device errors rejected."""
    last_seq: Dict[Device, int] = {}
    out: List[_Read] = []
    for x in sorted(exchanges, key=lambda e: e.ts_ns):
        where = f"{_iso(x.ts_ns)} {x.device}"
        seq = int.from_bytes(x.plain_request[-_SEQ:], "big")
        if x.device in last_seq and seq <= last_seq[x.device]:
            report.reject("replay", f"{where}: sequence number {seq} after {last_seq[x.device]}")
            continue
        last_seq[x.device] = seq
        code = x.plain_response[0]
        if code == INVALID_SEQUENCE:
            report.reject("sequence", f"{where}: response 0x0C to sequence number {seq}")
            continue
        try:
            req = _request(x.plain_request[:-_SEQ])
        except OSGPError as exc:
            report.reject("malformed", f"{where}: request: {exc}")
            continue
        if code != 0:
            report.reject("device_error", f"{where}: response 0x{code:02X} to {req}")
            continue
        if not isinstance(req, (messages.FullRead, messages.PartialRead)):
            report.writes += 1
            continue
        body = x.plain_response
        count = int.from_bytes(body[1:3], "big")
        if len(body) < 3 or len(body) != 3 + count:
            report.reject(
                "truncated", f"{where}: read response of {len(body)} bytes, count {count}"
            )
            continue
        offset = req.offset if isinstance(req, messages.PartialRead) else None
        out.append(_Read(x.device, req.table, offset, body[3:], x.ts_ns))
    return out


# ---- reassembly and decoding ----------------------------------------------------------------


def reassemble(reads: Sequence[_Read], report: Report) -> List[Image]:
    """Table images: a full read as it is; partial reads of one table placed
    at their offsets, a run starting at offset 0 and ending at the next
    read from offset 0 past its first piece or at a full read."""
    images: List[Image] = []
    runs: Dict[Tuple[Device, int], Tuple[bytearray, int, bool]] = {}

    def close(k: Tuple[Device, int]) -> None:
        buf, ts, gap = runs.pop(k)
        if gap:
            report.reject("truncated", f"{_iso(ts)} {k[0]} table {k[1]}: partial reads leave a gap")
        else:
            images.append(Image(k[0], k[1], ts, bytes(buf)))

    for r in reads:
        k = (r.device, r.table)
        if r.offset is None:
            if k in runs:
                close(k)
            images.append(Image(r.device, r.table, r.ts_ns, r.data))
            continue
        # a read from offset 0 starts a new run, unless the run holds that
        # first read alone: then it is the same piece read again (a session
        # repeats a piece as a new transaction after a proxy failure)
        if r.offset == 0 and k in runs and len(runs[k][0]) > len(r.data):
            close(k)
        buf, _, gap = runs.get(k, (bytearray(), 0, r.offset != 0))
        if r.offset > len(buf):
            gap = True
            buf.extend(bytes(r.offset - len(buf)))
        buf[r.offset : r.offset + len(r.data)] = r.data
        runs[k] = (buf, r.ts_ns, gap)
    for k in list(runs):
        close(k)
    images.sort(key=lambda im: im.ts_ns)
    report.images += len(images)
    return images


def _name(table: int) -> str:
    return f"ET{table - messages.ET:02d}" if table >= messages.ET else f"BT{table:02d}"


_NEEDS = {23: ("BT00", "BT21"), 64: ("BT61", "BT62", "BT63"), 74: ("BT71",)}


def decode_images(images: Sequence[Image], report: Report) -> Decoded:
    """Registers, load profiles and event logs from the images, each with the
    device's latest earlier images of the tables it depends on."""
    ctx: Dict[Device, Dict[str, bytes]] = defaultdict(dict)
    reg: Dict[str, list] = {k: [] for k in ("device", "time", "field", "value", "at")}
    lp: Dict[str, list] = {
        k: [] for k in ("device", "time", "channel", "value", "scaled", "status", "flags")
    }
    ev: Dict[str, list] = {
        k: []
        for k in ("device", "time", "event_number", "seq", "user_id", "code", "mfg", "argument")
    }
    registers: Dict[bytes, List[Image]] = defaultdict(list)
    reg_ctx: Dict[bytes, Dict[str, bytes]] = {}
    for im in images:
        c = ctx[im.device]
        c[_name(im.table)] = im.data
        need = _NEEDS.get(im.table)
        if need is None:
            continue
        where = f"{_iso(im.ts_ns)} {im.device} {_name(im.table)}"
        missing = [t for t in need if t not in c]
        if missing:
            report.reject("missing_context", f"{where}: {', '.join(missing)} not read before it")
            continue
        try:
            if im.table == 23:
                dims = {t: c[t] for t in need}
                sig = b"".join(dims.values())
                registers[sig].append(im)
                reg_ctx[sig] = dims
            elif im.table == 64:
                _lp_rows(lp, im, c)
            else:
                _event_rows(ev, im, c)
        except OSGPError as exc:  # a decoder's DecodeError, or a layout it cannot take
            report.reject("undecodable", f"{where}: {exc}")
    for sig, group in registers.items():
        _register_rows(reg, group, reg_ctx[sig], report)
    return Decoded(list(images), reg, lp, ev)


def _lp_rows(out: Dict[str, list], im: Image, c: Dict[str, bytes]) -> None:
    p = loadprofile.decode(
        c["BT61"], c["BT62"], c["BT63"], im.data, bt00=c.get("BT00"), et21=c.get("ET21")
    )
    n, nch = p.values.shape
    out["device"].append(np.full(n * nch, str(im.device), dtype=object))
    out["time"].append(np.repeat(p.timestamps.astype("datetime64[s]").astype(np.int64), nch))
    out["channel"].append(np.tile(np.arange(nch, dtype=np.uint8), n))
    out["value"].append(p.values.reshape(-1))
    out["scaled"].append(p.scaled.reshape(-1))
    out["status"].append(p.status.reshape(-1))
    out["flags"].append(np.repeat(p.flags, nch))


def _event_rows(out: Dict[str, list], im: Image, c: Dict[str, bytes]) -> None:
    e = loadprofile.decode_event_log(c["BT71"], im.data, bt00=c.get("BT00"))
    out["device"].append(np.full(len(e), str(im.device), dtype=object))
    out["time"].append(e["time"].astype("datetime64[s]").astype(np.int64))
    for name in ("event_number", "seq", "user_id", "code", "mfg"):
        out[name].append(e[name])
    out["argument"].append(e["argument"].astype(object))


def _register_rows(
    out: Dict[str, list], group: List[Image], dims: Dict[str, bytes], report: Report
) -> None:
    """BT23 images sharing their dimension tables: one columnar decode, then
    one row per (image, numeric field element)."""
    try:
        cols = tables.decode_columns(23, [im.data for im in group], dims)
    except OSGPError as exc:
        bad = getattr(exc, "image", None)
        if bad is None or len(group) == 1:
            for im in group:
                report.reject("undecodable", f"{_iso(im.ts_ns)} {im.device} BT23: {exc}")
            return
        report.reject("undecodable", f"{_iso(group[bad].ts_ns)} {group[bad].device} BT23: {exc}")
        rest = group[:bad] + group[bad + 1 :]
        _register_rows(out, rest, dims, report)
        return
    n = len(group)
    times = np.array([im.ts_ns // _NS for im in group], dtype=np.int64)
    devs = np.array([str(im.device) for im in group], dtype=object)
    for name, arr in cols.items():
        a = np.asarray(arr).reshape(n, -1)
        width = a.shape[1]
        if width == 0:
            continue
        shape = np.asarray(arr).shape[1:]
        names = [name + "".join(f"[{i}]" for i in ix) for ix in np.ndindex(*shape)] or [name]
        out["device"].append(np.repeat(devs, width))
        out["time"].append(np.repeat(times, width))
        out["field"].append(np.tile(np.array(names, dtype=object), n))
        flat = a.reshape(-1)
        if flat.dtype.kind == "M":
            out["value"].append(np.full(flat.shape, np.nan))
            out["at"].append(flat.astype("datetime64[s]").astype(np.int64))
        else:
            out["value"].append(flat.astype(np.float64))
            out["at"].append(np.full(flat.shape, np.iinfo(np.int64).min, dtype=np.int64))


# ---- the whole chain ------------------------------------------------------------------------


def decode_frames(fr: Frames, keys: KeyLookup, report: Report) -> Decoded:
    """Frames of one capture to images and rows, everything counted in ``report``."""
    status, hdr = _frames.lon_parse_batch(fr.data, fr.bounds, True, False)
    pairs = pair(fr, hdr, status == 0, report)
    exchanges: List[_Exchange] = []
    for q, s in pairs:
        d = Device(int(hdr["dest_subnet"][q]), int(hdr["dest_node"][q]) & 0x7F)
        x = _Exchange(d, int(fr.ts_ns[s]), _apdu(fr, hdr, int(q)), _apdu(fr, hdr, int(s)))
        k = keys.key_for(d)
        if k is None:
            report.reject("unknown_device", f"{_iso(x.ts_ns)} {d}: no key")
            continue
        x.key = bytes(k)
        exchanges.append(x)
    report.exchanges += len(pairs)
    reads = to_reads(verify(exchanges, report), report)
    return decode_images(reassemble(reads, report), report)
