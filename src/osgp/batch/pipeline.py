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
6. Decoding with the device's latest dimension tables: BT23 registers and
   BT28 present demands and values (columnar), BT64 load profile
   (BT61-BT63, ET21), BT74 event log (BT71).

Every frame ends in exactly one fate of :attr:`Report.frames`, and every
exchange or image that yields no rows is a rejection with a reason.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from osgp import _backend, crypto, loadprofile, tables
from osgp.batch.archive import Frames
from osgp.batch.keys import Device, KeyLookup
from osgp.errors import AuthenticationError, DecodeError, OSGPError
from osgp.link import lon, lon_proxy
from osgp.security.suite import (
    AUTH_FAILURE,
    INVALID_SEQUENCE,
    PLC_ENVELOPE,
    EnvelopeProfile,
    LegacySuite,
)
from osgp.services import messages
from osgp.tables.events import event_name

__all__ = ["Report", "Decoded", "decode_frames", "REASONS", "FATES", "MAX_EXAMPLES"]

_frames, _ = _backend.load("frames")
_capture, _ = _backend.load("capture")

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
    seconds: float = 0.0  # wall time (of a run: from start to the last file's end)
    cpu_seconds: float = 0.0  # CPU time of the tasks, summed over files (all cores)
    worker_cpu: Dict[str, float] = field(default_factory=dict)  # CPU seconds per process id

    def reject(self, reason: str, example: str, n: int = 1) -> None:
        self.rejected[reason] += n
        ex = self.examples.setdefault(reason, [])
        if len(ex) < MAX_EXAMPLES:
            ex.append(example)

    def merge(self, other: Report) -> Report:
        for name in ("files", "bytes", "packets", "exchanges", "verified", "writes", "images"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.seconds = max(self.seconds, other.seconds)
        self.cpu_seconds += other.cpu_seconds
        for name in ("capture", "frames", "rejected", "rows"):
            getattr(self, name).update(getattr(other, name))
        for pid, cpu in other.worker_cpu.items():
            self.worker_cpu[pid] = self.worker_cpu.get(pid, 0.0) + cpu
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
            "cpu_seconds": self.cpu_seconds,
            "worker_cpu": dict(self.worker_cpu),
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


class Repeated(NamedTuple):
    """A part of a string column: ``counts[i]`` copies of ``items[i]``, kept so
    until Arrow (one string per item, not per row)."""

    items: List[str]
    counts: np.ndarray


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


def _gather(
    data: np.ndarray, starts: np.ndarray, lengths: np.ndarray
) -> Tuple[np.ndarray, np.ndarray]:
    """The byte ranges packed: (bytes, n+1 offsets), in the ``capture`` kernel."""
    return _capture.gather(data, starts, lengths)


def _differs(a: np.ndarray, b: np.ndarray, off: np.ndarray) -> np.ndarray:
    """Per packed message i (``a[off[i]:off[i+1]]`` against the same range of
    ``b``): whether any byte differs."""
    bad = np.zeros(len(off) - 1, dtype=bool)
    at = np.flatnonzero(a != b)
    if len(at):
        bad[np.searchsorted(off, at, side="right") - 1] = True
    return bad


def _same_bytes(fr: Frames, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Frames a[i] and b[i] hold the same bytes (lengths first, then the
    equal-length pairs in one kernel call)."""
    la = fr.bounds[a + 1] - fr.bounds[a]
    out = la == fr.bounds[b + 1] - fr.bounds[b]
    j = np.flatnonzero(out)
    if len(j):
        out[j] = _capture.ranges_equal(fr.data, fr.bounds[a[j]], fr.bounds[b[j]], la[j])
    return out


_IDX_BITS = 29  # frame indices below 2**29; pairing keys (below) take 34 bits


def _composite(key: np.ndarray, idx: np.ndarray) -> Optional[np.ndarray]:
    """key[idx] << 29 | idx for distinct frame indices ``idx``: integers whose
    order is (key, index), sorted far faster than a stable argsort of the keys;
    None when an index does not fit."""
    if len(idx) and int(idx.max()) >= 1 << _IDX_BITS:
        return None
    return (key[idx] << _IDX_BITS) | idx


def _sorted_by_key(key: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``idx`` ordered by its frames' keys, then by index."""
    ck = _composite(key, idx)
    if ck is None:
        return idx[np.lexsort((idx, key[idx]))]
    return np.sort(ck) & ((1 << _IDX_BITS) - 1)


def _order_by_key(key: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """The positions that order ``idx`` by its frames' keys, then by index."""
    ck = _composite(key, idx)
    return np.lexsort((idx, key[idx])) if ck is None else np.argsort(ck)


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
    ev = _sorted_by_key(key, np.flatnonzero(is_req | is_resp))
    # retransmissions: same key, same kind, same bytes as the event before
    k, r = key[ev], is_req[ev]
    cand = np.flatnonzero((k[1:] == k[:-1]) & (r[1:] == r[:-1])) + 1
    rep = cand[_same_bytes(fr, ev[cand], ev[cand - 1])] if len(cand) else cand
    fate[ev[rep]] = np.where(r[rep], f["retransmission"], f["duplicate"])
    keep = np.ones(len(ev), dtype=bool)
    keep[rep] = False
    ev = ev[keep]
    k, r = key[ev], is_req[ev]
    # a response pairs with the request just before it under its key
    j = np.flatnonzero(~r[1:] & r[:-1] & (k[1:] == k[:-1])) + 1
    req, resp = ev[j - 1], ev[j]
    order = np.argsort(req)  # frame indices: no two equal
    req, resp = req[order], resp[order]
    # duplicate exchanges: the pair before under the same key, byte for byte
    pk = key[req]
    byk = _order_by_key(key, req)
    prev_same = np.zeros(len(req), dtype=bool)
    if len(req) > 1:
        a, b = byk[1:], byk[:-1]
        same = pk[a] == pk[b]
        idx = np.flatnonzero(same)
        same[idx] = _same_bytes(fr, req[a[idx]], req[b[idx]]) & _same_bytes(
            fr, resp[a[idx]], resp[b[idx]]
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
class _Exchanges:
    """Exchanges as columns: the device (an index into ``devices``), the
    response's capture time, and where each envelope lies in the frames'
    bytes."""

    dev: np.ndarray
    ts: np.ndarray
    q0: np.ndarray  # request APDU start
    q1: np.ndarray  # request APDU end
    s0: np.ndarray  # response APDU start
    s1: np.ndarray
    devices: List[Device]

    def take(self, i: np.ndarray) -> _Exchanges:
        return _Exchanges(
            self.dev[i], self.ts[i], self.q0[i], self.q1[i], self.s0[i], self.s1[i], self.devices
        )

    def __len__(self) -> int:
        return len(self.dev)


@dataclass
class _Plain:
    """Verified exchanges: device, time, and their plaintexts as ranges of
    ``buf`` (request ``code args seq:4``, response ``code data``)."""

    buf: np.ndarray
    dev: np.ndarray
    ts: np.ndarray
    q0: np.ndarray
    qn: np.ndarray
    s0: np.ndarray
    sn: np.ndarray
    devices: List[Device]


def _reject_each(report: Report, reason: str, idx: np.ndarray, example: Any) -> None:
    """Reject ``len(idx)`` items, formatting only the examples kept."""
    if not len(idx):
        return
    have = len(report.examples.get(reason, []))
    for i in idx[: max(MAX_EXAMPLES - have, 0)]:
        report.reject(reason, example(int(i)), 0)
    report.rejected[reason] += len(idx)


def _exchanges(fr: Frames, hdr: np.ndarray, pairs: np.ndarray) -> _Exchanges:
    q, s = pairs[:, 0], pairs[:, 1]
    bq, bs = fr.bounds[q], fr.bounds[s]
    addr, dev = np.unique(_addr(hdr["dest_subnet"][q], hdr["dest_node"][q]), return_inverse=True)
    return _Exchanges(
        dev.reshape(-1),
        fr.ts_ns[s],
        bq + hdr["pdu_offset"][q].astype(np.int64) + 1,
        bq + hdr["pdu_end"][q].astype(np.int64),
        bs + hdr["pdu_offset"][s].astype(np.int64) + 1,
        bs + hdr["pdu_end"][s].astype(np.int64),
        [Device(int(a) >> 7, int(a) & 0x7F) for a in addr],
    )


def verify(
    data: np.ndarray,
    x: _Exchanges,
    keys: KeyLookup,
    report: Report,
    envelope: EnvelopeProfile = PLC_ENVELOPE,
) -> _Plain:
    """The exchanges whose request and response digests verify, with their
    plaintexts; one key lookup per device, digests in packed batch calls
    (``crypto.oma_digest_packed``, keys per message) per key size."""
    inv = x.dev
    ukeys = [keys.key_for(d) for d in x.devices]
    known = np.array([k is not None for k in ukeys], dtype=bool)[inv]

    def where(i: int) -> str:
        return f"{_iso(int(x.ts[i]))} {x.devices[x.dev[i]]}"

    _reject_each(
        report,
        "unknown_device",
        np.flatnonzero(~known),
        lambda i: f"{where(i)}: no key",
    )
    short = known & ((x.q1 - x.q0 < 1 + _SEQ + _DIGEST) | (x.s1 - x.s0 < 1 + _DIGEST))
    _reject_each(
        report,
        "truncated",
        np.flatnonzero(short),
        lambda i: f"{where(i)}: envelope shorter than its trailer",
    )
    size = np.array([len(k) if k is not None else 0 for k in ukeys], dtype=np.int64)
    size = size[inv]
    plain: List[np.ndarray] = []
    extra: List[Tuple[int, bytes, bytes]] = []  # RC4-encrypted: (exchange, request, response)
    for ks in np.unique(size[known & ~short]):
        g = np.flatnonzero(known & ~short & (size == ks))
        same = (bytes(k) if k is not None and len(k) == ks else bytes(int(ks)) for k in ukeys)
        kmat = np.frombuffer(b"".join(same), dtype=np.uint8).reshape(len(ukeys), -1)
        kbytes = kmat[inv[g]].tobytes()
        y = x.take(g)
        msg, off = _gather(data, y.q0, y.q1 - _DIGEST - y.q0)
        try:
            got = crypto.oma_digest_packed(kbytes, msg.data, off.data, key_size=int(ks))
        except OSGPError as exc:  # a key of a size the digest does not take
            why = str(exc)
            _reject_each(
                report,
                "unknown_device",
                g,
                lambda i, why=why: f"{x.devices[x.dev[i]]}: key unusable ({why})",
            )
            continue
        tag, toff = _gather(data, y.q1 - _DIGEST, np.full(len(g), _DIGEST))
        bad = _differs(np.frombuffer(got, dtype=np.uint8), tag, toff)
        for j in np.flatnonzero(bad):
            i = int(g[j])
            k = ukeys[inv[i]]
            opened = _open_encrypted(
                LegacySuite(bytes(k), envelope),
                data[x.q0[i] : x.q1[i]].tobytes(),
                data[x.s0[i] : x.s1[i]].tobytes(),
            )
            if opened is not None:
                extra.append((i, *opened))
            else:
                report.reject("digest", f"{where(i)}: request digest")
        g, y = g[~bad], y.take(np.flatnonzero(~bad))
        if not len(g):
            continue
        # response digest over request plaintext || response data
        st = np.stack([y.q0, y.s0], axis=1).reshape(-1)
        ln = np.stack([y.q1 - _DIGEST - y.q0, y.s1 - _DIGEST - y.s0], axis=1).reshape(-1)
        msg, off = _gather(data, st, ln)
        got = crypto.oma_digest_packed(
            kmat[inv[g]].tobytes(), msg.data, off[::2].copy().data, key_size=int(ks)
        )
        tag, toff = _gather(data, y.s1 - _DIGEST, np.full(len(g), _DIGEST))
        bad = _differs(np.frombuffer(got, dtype=np.uint8), tag, toff)
        # 0x0B travels with a trailer that cannot chain (suite.py, INFERRED)
        bad &= ~(
            (y.s1 - _DIGEST - y.s0 == 1) & (data[np.minimum(y.s0, len(data) - 1)] == AUTH_FAILURE)
        )
        _reject_each(
            report,
            "digest",
            g[bad],
            lambda i: f"{where(i)}: response digest",
        )
        plain.append(g[~bad])
    ok = np.concatenate(plain) if plain else np.zeros(0, dtype=np.int64)
    y = x.take(ok)
    out = _Plain(
        data, y.dev, y.ts, y.q0, y.q1 - _DIGEST - y.q0, y.s0, y.s1 - _DIGEST - y.s0, x.devices
    )
    if extra:
        out = _with_extra(out, x, extra)
    report.verified += len(out.dev)
    return out


def _with_extra(p: _Plain, x: _Exchanges, extra: List[Tuple[int, bytes, bytes]]) -> _Plain:
    """Append the plaintexts of RC4-encrypted exchanges (they are not ranges
    of the frames) behind the frames' bytes."""
    base = len(p.buf)
    blob = b"".join(q + s for _, q, s in extra)
    q0, qn, s0, sn, at = [], [], [], [], base
    for _, q, s in extra:
        q0.append(at)
        qn.append(len(q))
        s0.append(at + len(q))
        sn.append(len(s))
        at += len(q) + len(s)
    i = np.array([e[0] for e in extra], dtype=np.int64)
    cat = np.concatenate
    return _Plain(
        cat([p.buf, np.frombuffer(blob, dtype=np.uint8)]),
        cat([p.dev, x.dev[i]]),
        cat([p.ts, x.ts[i]]),
        cat([p.q0, np.array(q0, dtype=np.int64)]),
        cat([p.qn, np.array(qn, dtype=np.int64)]),
        cat([p.s0, np.array(s0, dtype=np.int64)]),
        cat([p.sn, np.array(sn, dtype=np.int64)]),
        p.devices,
    )


def _open_encrypted(
    suite: LegacySuite, request: bytes, response: bytes
) -> Optional[Tuple[bytes, bytes]]:
    """An RC4-encrypted exchange's plaintexts, through the suite itself (rare: one call each)."""
    try:
        _, _, ctx = suite.open_request(request)
        if not ctx.encrypted:
            return None
        return ctx.request_plain, suite.open_response(ctx, response)
    except (AuthenticationError, DecodeError):
        return None


def _request(apdu: bytes) -> Any:
    return messages.decode_request(apdu, messages.PLC_SERVICES)


def _be(buf: np.ndarray, at: np.ndarray, width: int) -> np.ndarray:
    """Big-endian unsigned integers of ``width`` bytes at ``at``."""
    v = np.zeros(len(at), dtype=np.int64)
    for k in range(width):
        v = (v << 8) | buf[at + k]
    return v


@dataclass
class _Reads:
    """Successful table reads in capture order: data as ranges of ``buf``;
    ``offset`` -1 for a full read."""

    buf: np.ndarray
    dev: np.ndarray
    table: np.ndarray
    offset: np.ndarray
    d0: np.ndarray
    dn: np.ndarray
    ts: np.ndarray
    devices: List[Device]


def to_reads(p: _Plain, report: Report) -> _Reads:
    """Successful table reads of verified exchanges, in capture order; replays,
    sequence and device errors rejected.  Full (30 table:2) and partial
    (3F table:2 offset:3 count:2) reads are parsed in place (messages.py),
    other requests through ``messages.decode_request``."""
    buf = p.buf
    o = np.argsort(p.ts, kind="stable")
    dev, ts, q0, qn, s0, sn = p.dev[o], p.ts[o], p.q0[o], p.qn[o], p.s0[o], p.sn[o]
    n = len(o)
    seq = _be(buf, q0 + qn - _SEQ, _SEQ)
    # per device the sequence numbers must grow: each above the running
    # maximum of the ones before it (seq < 2**32, so device rank << 33 keeps
    # devices apart in one running maximum)
    by = np.argsort(dev, kind="stable")
    _, rank = np.unique(dev[by], return_inverse=True)
    v = seq[by] + (rank.astype(np.int64) << 33)
    run = np.maximum.accumulate(v) if n else v
    replay = np.zeros(n, dtype=bool)
    last = np.zeros(n, dtype=np.int64)
    if n > 1:
        replay[by[1:]] = v[1:] <= run[:-1]
        last[by[1:]] = run[:-1] - (rank[1:].astype(np.int64) << 33)

    def where(i: int) -> str:
        return f"{_iso(int(ts[i]))} {p.devices[dev[i]]}"

    _reject_each(
        report,
        "replay",
        np.flatnonzero(replay),
        lambda i: f"{where(i)}: sequence number {seq[i]} after {last[i]}",
    )
    code = buf[s0]
    alive = ~replay
    bad_seq = alive & (code == INVALID_SEQUENCE)
    _reject_each(
        report,
        "sequence",
        np.flatnonzero(bad_seq),
        lambda i: f"{where(i)}: response 0x0C to sequence number {seq[i]}",
    )
    alive &= ~bad_seq
    alen = qn - _SEQ
    first = buf[q0]
    full = (alen == 3) & (first == messages.FULL_READ)
    part = (alen == 8) & (first == messages.PARTIAL_READ)
    table = np.where(full | part, _be(buf, np.minimum(q0 + 1, len(buf) - 2), 2), -1)
    offset = np.where(part, _be(buf, np.minimum(q0 + 3, len(buf) - 3), 3), -1)
    is_read = full | part
    reqs: Dict[int, Any] = {}
    for i in np.flatnonzero(alive & ~is_read):
        try:
            reqs[int(i)] = r = _request(buf[q0[i] : q0[i] + alen[i]].tobytes())
        except OSGPError as exc:
            report.reject("malformed", f"{where(int(i))}: request: {exc}")
            alive[i] = False
            continue
        if isinstance(r, (messages.FullRead, messages.PartialRead)):
            is_read[i] = True
            table[i] = r.table
            offset[i] = r.offset if isinstance(r, messages.PartialRead) else -1

    def req(i: int) -> Any:
        if i in reqs:
            return reqs[i]
        if offset[i] < 0:
            return messages.FullRead(int(table[i]))
        return messages.PartialRead(
            int(table[i]), int(offset[i]), int(_be(buf, q0[i : i + 1] + 6, 2)[0])
        )

    err = alive & (code != 0)
    _reject_each(
        report,
        "device_error",
        np.flatnonzero(err),
        lambda i: f"{where(i)}: response 0x{code[i]:02X} to {req(i)}",
    )
    alive &= ~err
    report.writes += int(np.count_nonzero(alive & ~is_read))
    alive &= is_read
    count = np.where(sn >= 3, _be(buf, np.minimum(s0 + 1, len(buf) - 2), 2), -1)
    short = alive & ((sn < 3) | (sn != 3 + count))
    _reject_each(
        report,
        "truncated",
        np.flatnonzero(short),
        lambda i: f"{where(i)}: read response of {sn[i]} bytes, count {count[i]}",
    )
    k = np.flatnonzero(alive & ~short)
    return _Reads(buf, dev[k], table[k], offset[k], s0[k] + 3, sn[k] - 3, ts[k], p.devices)


# ---- reassembly and decoding ----------------------------------------------------------------


def reassemble(r: _Reads, report: Report) -> List[Image]:
    """Table images: a full read as it is; partial reads of one table placed
    at their offsets, a run starting at offset 0 and ending at the next
    read from offset 0 past its first piece or at a full read.  Runs of reads that follow each
    other without gap or overlap are joined in one gather; the others are
    placed one read at a time."""
    key = (r.dev << 16) | r.table
    o = np.argsort(key, kind="stable")  # by (device, table), capture order within
    k, off, dn = key[o], r.offset[o], r.dn[o]
    n = len(o)
    full = off < 0
    start = np.ones(n, dtype=bool)
    if n > 1:
        # a read from offset 0 starts a new run, unless it reads again the
        # run's lone first piece (a session repeats a piece as a new
        # transaction after a proxy failure)
        again = (off[:-1] == 0) & (dn[:-1] <= dn[1:])
        start[1:] = (k[1:] != k[:-1]) | full[1:] | full[:-1] | ((off[1:] == 0) & ~again)
    run = np.cumsum(start) - 1
    first = np.flatnonzero(start)
    ends = np.append(first[1:], n)
    pos = np.cumsum(dn) - dn  # where each read would land if the run were packed
    at = pos - pos[first][run]
    clean = np.ones(len(first), dtype=bool)
    np.logical_and.at(clean, run, full | (off == at))
    data, boff = _gather(r.buf, r.d0[o], dn)
    images: List[Image] = []
    for j in range(len(first)):
        a, b = int(first[j]), int(ends[j])
        dev, table, ts = r.devices[r.dev[o[a]]], int(r.table[o[a]]), int(r.ts[o[b - 1]])
        if clean[j]:
            images.append(Image(dev, table, ts, data[boff[a] : boff[b]].tobytes()))
            continue
        buf, gap = bytearray(), False
        for i in range(a, b):
            lo, ln = int(off[i]), int(dn[i])
            if lo > len(buf):
                gap = True
                buf.extend(bytes(lo - len(buf)))
            buf[lo : lo + ln] = data[boff[i] : boff[i] + ln].tobytes()
        if gap:
            report.reject("truncated", f"{_iso(ts)} {dev} table {table}: partial reads leave a gap")
        else:
            images.append(Image(dev, table, ts, bytes(buf)))
    images.sort(key=lambda im: im.ts_ns)
    report.images += len(images)
    return images


def _name(table: int) -> str:
    return f"ET{table - messages.ET:02d}" if table >= messages.ET else f"BT{table:02d}"


# BT28's layout, as BT23's, is sized by BT21 ([MEP p.213-218])
_REGISTERS = (23, 28)
_NEEDS = {23: ("BT00", "BT21"), 28: ("BT00", "BT21"), 64: ("BT61", "BT62", "BT63"), 74: ("BT71",)}
_LP_CONFIG = ("BT00", "BT61", "BT62", "ET21")  # what BT64 images share to be decoded together


def _where(im: Image) -> str:
    return f"{_iso(im.ts_ns)} {im.device} {_name(im.table)}"


def decode_images(images: Sequence[Image], report: Report) -> Decoded:
    """Registers, load profiles and event logs from the images, each with the
    device's latest earlier images of the tables it depends on."""
    ctx: Dict[Device, Dict[str, bytes]] = defaultdict(dict)
    reg: Dict[str, list] = {k: [] for k in ("device", "time", "table", "field", "value", "at")}
    lp: Dict[str, list] = {
        k: [] for k in ("device", "time", "channel", "value", "scaled", "status", "flags")
    }
    ev: Dict[str, list] = {
        k: []
        for k in (
            "device",
            "time",
            "event_number",
            "seq",
            "user_id",
            "code",
            "mfg",
            "name",
            "argument",
        )
    }
    registers: Dict[Tuple[int, bytes], List[Image]] = defaultdict(list)
    reg_ctx: Dict[Tuple[int, bytes], Dict[str, bytes]] = {}
    profiles: Dict[tuple, List[Tuple[Image, bytes]]] = defaultdict(list)
    logs: Dict[tuple, List[Image]] = defaultdict(list)
    for im in images:
        c = ctx[im.device]
        c[_name(im.table)] = im.data
        need = _NEEDS.get(im.table)
        if need is None:
            continue
        missing = [t for t in need if t not in c]
        if missing:
            report.reject(
                "missing_context", f"{_where(im)}: {', '.join(missing)} not read before it"
            )
            continue
        try:
            if im.table in _REGISTERS:
                dims = {t: c[t] for t in need}
                sig = (im.table, b"".join(dims.values()))
                registers[sig].append(im)
                reg_ctx[sig] = dims
            elif im.table == 64:
                cfg = tuple(c.get(t) for t in _LP_CONFIG)
                profiles[cfg].append((im, c["BT63"]))
            else:
                logs[(c.get("BT00"), c["BT71"])].append(im)
        except OSGPError as exc:  # a decoder's DecodeError, or a layout it cannot take
            report.reject("undecodable", f"{_where(im)}: {exc}")
    for sig, group in registers.items():
        _register_rows(reg, sig[0], group, reg_ctx[sig], report)
    for config, members in profiles.items():
        _lp_rows(lp, members, dict(zip(_LP_CONFIG, config)), report)
    for (bt00, bt71), group in logs.items():
        _event_rows(ev, group, {"BT00": bt00, "BT71": bt71}, report)
    return Decoded(list(images), reg, lp, ev)


def _lp_rows(
    out: Dict[str, list],
    members: List[Tuple[Image, bytes]],
    cfg: Dict[str, Optional[bytes]],
    report: Report,
) -> None:
    """BT64 images sharing BT00/BT61/BT62/ET21, each with the BT63 read
    before it: one columnar decode; when it fails, one decode per image, so
    that only the bad ones are rejected."""
    bt61, bt62, bt00, et21 = cfg["BT61"], cfg["BT62"], cfg["BT00"], cfg["ET21"]
    try:
        p = loadprofile.decode_images(
            bt61, bt62, [m[1] for m in members], [m[0].data for m in members], bt00=bt00, et21=et21
        )
    except OSGPError as exc:
        if len(members) == 1:
            im = members[0][0]
            report.reject("undecodable", f"{_where(im)}: {exc}")
            return
        for m in members:
            _lp_rows(out, [m], cfg, report)
        return
    n, nch = p.values.shape
    per_meter = np.diff(p.offsets) * nch
    out["device"].append(Repeated([str(m[0].device) for m in members], per_meter))
    out["time"].append(np.repeat(p.timestamps.astype(np.int64), nch))
    out["channel"].append(np.tile(np.arange(nch, dtype=np.uint8), n))
    out["value"].append(p.values.reshape(-1))
    out["scaled"].append(p.scaled.reshape(-1))
    out["status"].append(p.status.reshape(-1))
    out["flags"].append(np.repeat(p.flags, nch))


def _event_rows(
    out: Dict[str, list], group: List[Image], cfg: Dict[str, Optional[bytes]], report: Report
) -> None:
    """BT74 images sharing BT00/BT71: one columnar decode; when it fails, one
    decode per image, so that only the bad ones are rejected."""
    try:
        e, offsets = loadprofile.decode_event_logs(
            cfg["BT71"], [im.data for im in group], bt00=cfg["BT00"]
        )
    except OSGPError as exc:
        if len(group) == 1:
            report.reject("undecodable", f"{_where(group[0])}: {exc}")
            return
        for im in group:
            _event_rows(out, [im], cfg, report)
        return
    out["device"].append(Repeated([str(im.device) for im in group], np.diff(offsets)))
    out["time"].append(e["time"].astype("datetime64[s]").astype(np.int64))
    for name in ("event_number", "seq", "user_id", "code", "mfg"):
        out[name].append(e[name])
    names = {k: event_name(k[0], k[1]) for k in set(zip(e["code"].tolist(), e["mfg"].tolist()))}
    out["name"].append(
        np.array([names[k] for k in zip(e["code"].tolist(), e["mfg"].tolist())], dtype=object)
    )
    out["argument"].append(e["argument"])


def _register_rows(
    out: Dict[str, list], table: int, group: List[Image], dims: Dict[str, bytes], report: Report
) -> None:
    """BT23 or BT28 images sharing their dimension tables: one columnar
    decode, then one row per (image, numeric field element); a time left
    (BT28 TIME_REMAINING) is its value in seconds."""
    try:
        cols = tables.decode_columns(table, [im.data for im in group], dims)
    except OSGPError as exc:
        bad = getattr(exc, "image", None)
        if bad is None or len(group) == 1:
            for im in group:
                report.reject("undecodable", f"{_where(im)}: {exc}")
            return
        report.reject("undecodable", f"{_where(group[bad])}: {exc}")
        rest = group[:bad] + group[bad + 1 :]
        _register_rows(out, table, rest, dims, report)
        return
    n = len(group)
    times = np.array([im.ts_ns // _NS for im in group], dtype=np.int64)
    devs = [str(im.device) for im in group]
    for name, arr in cols.items():
        a = np.asarray(arr).reshape(n, -1)
        width = a.shape[1]
        if width == 0:
            continue
        shape = np.asarray(arr).shape[1:]
        names = [name + "".join(f"[{i}]" for i in ix) for ix in np.ndindex(*shape)] or [name]
        out["device"].append(Repeated(devs, np.full(n, width)))
        out["time"].append(np.repeat(times, width))
        out["table"].append(np.full(n * width, table, dtype=np.int32))
        out["field"].append(np.tile(np.array(names, dtype=object), n))
        flat = a.reshape(-1)
        if flat.dtype.kind == "m":
            out["value"].append(flat.astype("timedelta64[s]").astype(np.float64))
            out["at"].append(np.full(flat.shape, np.iinfo(np.int64).min, dtype=np.int64))
        elif flat.dtype.kind == "M":
            out["value"].append(np.full(flat.shape, np.nan))
            out["at"].append(flat.astype("datetime64[s]").astype(np.int64))
        else:
            out["value"].append(flat.astype(np.float64))
            out["at"].append(np.full(flat.shape, np.iinfo(np.int64).min, dtype=np.int64))


# ---- the whole chain ------------------------------------------------------------------------


def decode_frames(fr: Frames, keys: KeyLookup, report: Report) -> Decoded:
    """Frames of one capture to images and rows, everything counted in ``report``."""
    return decode_images(frame_images(fr, keys, report), report)


def frame_images(fr: Frames, keys: KeyLookup, report: Report) -> List[Image]:
    """LonTalk frames to table images (stages 1-5)."""
    status, hdr = _frames.lon_parse_batch(fr.data, fr.bounds, True, False)
    pairs = pair(fr, hdr, status == 0, report)
    report.exchanges += len(pairs)
    plain = verify(fr.data, _exchanges(fr, hdr, pairs), keys, report)
    return reassemble(to_reads(plain, report), report)
