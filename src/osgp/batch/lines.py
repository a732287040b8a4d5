"""Serial captures as text, one line per frame (docs/batch.md, "Line captures").

::

    #osgp-frames 1
    2026-01-02T12:00:00.123456789Z tx mep 2.1 00133000170000002a...
    2026-01-02T12:00:00.201000000Z rx mep 2.1 000e00000100...

Fields, separated by blanks: UTC time (ISO 8601, ``Z``, up to nanoseconds);
direction (``tx``: head end to meter, ``rx``: meter to head end); link
(``lon``: a LonTalk LPDU without CRC, as CN/IP carries it; ``mep``: a MEP
frame with its length, MEP guide p.9; ``optical``: a C12.18 packet or an
ACK/NAK byte, Optical Port Programmer's Guide p.8-10); device (``subnet.node``
or a 12-digit Neuron ID: the key file's names; ``-`` on ``lon``, whose frames
carry their addresses); the frame's bytes in hex.  Lines starting with ``#``
and blank lines are skipped.

:class:`LineWriter` writes the format (:class:`Recorder` taps a session's
frames into it); :func:`parse_lines` reads it; :func:`line_images` takes
the frames to table images through the same stages as a pcapng capture.
"""

from __future__ import annotations

import re
from typing import IO, Any, Dict, List, NamedTuple, Optional, Tuple

import numpy as np

from osgp.batch.archive import Frames
from osgp.batch.keys import Device, KeyLookup, parse_device
from osgp.batch.pipeline import (
    FATES,
    Image,
    Report,
    _Exchanges,
    _gather,
    _iso,
    _Reads,
    _reject_each,
    frame_images,
    reassemble,
    to_reads,
    verify,
)
from osgp.errors import MalformedError, OSGPError
from osgp.link import optical
from osgp.security.suite import MEP_ENVELOPE
from osgp.services import messages

__all__ = [
    "MAGIC",
    "LINKS",
    "LineFrames",
    "LineWriter",
    "Recorder",
    "format_line",
    "is_line_capture",
    "parse_lines",
    "line_images",
]

MAGIC = b"#osgp-frames 1"
LINKS = ("lon", "mep", "optical")
DIRECTIONS = ("tx", "rx")
LAYER = "lines"
# ISO 8601 extended format, UTC ("Z"), seconds with up to nine decimals
_TIME = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z")
_ACK_NAK = (b"\x06", b"\x15")  # C12.18 ACK / NAK [OPT p.9]
# read 30, partial read 3F, write 40, partial write 4F (osgp.services.messages)
_TABLE_SERVICES = (b"\x30", b"\x3f", b"\x40", b"\x4f")


class LineFrames(NamedTuple):
    """The frames of a line capture, packed like :class:`~osgp.batch.archive.Frames`."""

    data: np.ndarray
    bounds: np.ndarray
    ts_ns: np.ndarray
    direction: np.ndarray  # 0 tx, 1 rx
    link: np.ndarray  # index into LINKS
    device: np.ndarray  # index into devices, -1 for "-"
    devices: List[Device]
    line: np.ndarray  # 1-based line number

    def __len__(self) -> int:
        return len(self.ts_ns)


def is_line_capture(head: Any) -> bool:
    return bytes(head[: len(MAGIC)]) == MAGIC


def format_line(ts_ns: int, direction: str, link: str, device: Any, frame: bytes) -> str:
    if direction not in DIRECTIONS or link not in LINKS:
        raise MalformedError(f"direction {direction!r} / link {link!r}", layer=LAYER, offset=0)
    t = str(np.datetime64(int(ts_ns), "ns")) + "Z"
    return f"{t} {direction} {link} {device if device is not None else '-'} {bytes(frame).hex()}\n"


class LineWriter:
    """Writes a line capture to a text file object (the header first)."""

    def __init__(self, f: IO[str]) -> None:
        self.f = f
        f.write(MAGIC.decode() + "\n")

    def write(self, ts_ns: int, direction: str, link: str, device: Any, frame: bytes) -> None:
        self.f.write(format_line(ts_ns, direction, link, device, frame))


class Recorder:
    """A client session whose frames also go to a :class:`LineWriter`: the
    frames it sends (``tx``) and the data it is handed (``rx``), stamped by
    ``clock()`` (ns).  Everything else is the session's."""

    def __init__(self, session: Any, writer: LineWriter, link: str, device: Any, clock: Any):
        self._s, self._w, self._link, self._dev, self._clock = session, writer, link, device, clock

    def poll_transmit(self, *a: Any) -> Optional[bytes]:
        frame = self._s.poll_transmit(*a)
        if frame is not None:
            self._w.write(self._clock(), "tx", self._link, self._dev, frame)
        return frame

    def receive_data(self, data: bytes, *a: Any) -> Any:
        self._w.write(self._clock(), "rx", self._link, self._dev, data)
        return self._s.receive_data(data, *a)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s, name)


def parse_lines(data: Any, *, strict: bool = True) -> Tuple[LineFrames, Dict[str, Any]]:
    """Every frame of a line capture.  A line that does not parse raises
    MalformedError (layer ``lines``, offset of the line) with ``strict``, or
    is counted in ``info["bad"]`` (first one in ``info["fault"]``)."""
    raw = bytes(data)
    if not is_line_capture(raw):
        raise MalformedError("not a line capture (no #osgp-frames 1 header)", layer=LAYER, offset=0)
    stamps: List[str] = []
    hexes: List[bytes] = []
    dirs: List[int] = []
    links: List[int] = []
    devs: List[int] = []
    lines: List[int] = []
    names: Dict[bytes, int] = {}
    devices: List[Device] = []
    info: Dict[str, Any] = {"lines": 0, "frames": 0, "bad": 0, "fault": None}
    at = 0
    for no, line in enumerate(raw.split(b"\n"), 1):
        start, at = at, at + len(line) + 1
        info["lines"] += 1
        s = line.strip()
        if not s or s.startswith(b"#"):
            continue
        try:
            t, d, lk, dv, hx = _fields(s, start)
            frame = bytes.fromhex(hx.decode("ascii"))
            if not frame:
                raise MalformedError("no frame bytes", layer=LAYER, offset=start)
            np.datetime64(t, "ns")
        except OSGPError as exc:
            _bad(info, exc, strict)
            continue
        except (ValueError, UnicodeDecodeError) as exc:
            _bad(info, MalformedError(f"line {no}: {exc}", layer=LAYER, offset=start), strict)
            continue
        if dv == b"-":
            code = -1
        elif dv in names:
            code = names[dv]
        else:
            try:
                dev = parse_device(dv.decode("ascii", "replace"))
            except OSGPError as exc:
                _bad(info, MalformedError(f"line {no}: {exc}", layer=LAYER, offset=start), strict)
                continue
            code = names[dv] = len(devices)
            devices.append(dev)
        stamps.append(t)
        hexes.append(hx)
        dirs.append(DIRECTIONS.index(d.decode()))
        links.append(LINKS.index(lk.decode()))
        devs.append(code)
        lines.append(no)
    blob = bytes.fromhex(b"".join(hexes).decode("ascii"))
    bounds = np.zeros(len(hexes) + 1, dtype=np.int64)
    np.cumsum([len(h) // 2 for h in hexes], out=bounds[1:])
    info["frames"] = len(hexes)
    lf = LineFrames(
        np.frombuffer(blob, dtype=np.uint8),
        bounds,
        np.array(stamps, dtype="datetime64[ns]").astype(np.int64),
        np.array(dirs, dtype=np.uint8),
        np.array(links, dtype=np.uint8),
        np.array(devs, dtype=np.int64),
        devices,
        np.array(lines, dtype=np.int64),
    )
    return lf, info


def _fields(s: bytes, start: int) -> Tuple[str, bytes, bytes, bytes, bytes]:
    f = s.split()
    if len(f) != 5:
        raise MalformedError(f"{len(f)} fields, want 5", layer=LAYER, offset=start)
    t, d, lk, dv, hx = f
    if not _TIME.fullmatch(t):
        raise MalformedError("time is not ISO 8601 UTC (…Z)", layer=LAYER, offset=start)
    if d not in (b"tx", b"rx"):
        raise MalformedError(f"direction {d!r}: tx or rx", layer=LAYER, offset=start)
    if lk.decode("ascii", "replace") not in LINKS:
        raise MalformedError(f"link {lk!r}: {', '.join(LINKS)}", layer=LAYER, offset=start)
    if (dv == b"-") != (lk == b"lon"):
        raise MalformedError(
            "device '-' on lon lines only, a device on the others", layer=LAYER, offset=start
        )
    return t[:-1].decode("ascii"), d, lk, dv, hx


def _bad(info: Dict[str, Any], exc: OSGPError, strict: bool) -> None:
    if strict:
        raise exc
    info["bad"] += 1
    if info["fault"] is None:
        info["fault"] = (str(exc), getattr(exc, "offset", 0))


# ---- decoding ---------------------------------------------------------------------------------


def line_images(lf: LineFrames, keys: KeyLookup, report: Report) -> List[Image]:
    """Table images of every link of a line capture, in time order."""
    images: List[Image] = []
    link = lf.link
    lon = np.flatnonzero(link == LINKS.index("lon"))
    if len(lon):
        data, bounds = _gather(lf.data, lf.bounds[lon], np.diff(lf.bounds)[lon])
        fr = Frames(data, bounds, lf.ts_ns[lon], lf.line[lon])
        images += frame_images(fr, keys, report)
    mep = np.flatnonzero(link == LINKS.index("mep"))
    if len(mep):
        images += _mep_images(lf, mep, keys, report)
    opt = np.flatnonzero(link == LINKS.index("optical"))
    if len(opt):
        images += _optical_images(lf, opt, report)
    images.sort(key=lambda im: im.ts_ns)
    return images


def _frame(lf: LineFrames, i: int) -> bytes:
    return lf.data[lf.bounds[i] : lf.bounds[i + 1]].tobytes()


def _serial_pairs(
    lf: LineFrames, idx: np.ndarray, report: Report, is_other: Any
) -> List[Tuple[int, int]]:
    """A serial line carries one exchange at a time: an ``rx`` frame answers
    the device's last unanswered ``tx``; a ``tx`` identical to the unanswered
    one before it is a retransmission.  Fates counted in ``report.frames``."""
    fates = {name: 0 for name in FATES}
    pending: Dict[int, int] = {}
    pairs: List[Tuple[int, int]] = []
    for i in idx.tolist():
        d = int(lf.device[i])
        f = _frame(lf, i)
        if is_other(f):
            fates["other_pdu"] += 1
        elif lf.direction[i] == 0:
            q = pending.get(d)
            if q is not None:
                if _frame(lf, q) == f:
                    fates["retransmission"] += 1
                    continue
                fates["unpaired_request"] += 1
                _unpaired(report, lf, q, "unpaired request")
            pending[d] = i
        elif d in pending:
            pairs.append((pending.pop(d), i))
            fates["exchange"] += 2
        else:
            fates["unpaired_response"] += 1
            _unpaired(report, lf, i, "unpaired response")
    for q in pending.values():
        fates["unpaired_request"] += 1
        _unpaired(report, lf, q, "unpaired request")
    for name, n in fates.items():
        if n:
            report.frames[name] += n
    report.exchanges += len(pairs)
    return pairs


def _unpaired(report: Report, lf: LineFrames, i: int, what: str) -> None:
    where = f"{_iso(int(lf.ts_ns[i]))} line {int(lf.line[i])} {lf.devices[int(lf.device[i])]}"
    report.reject("unpaired", f"{where}: {what}")


def _mep_images(lf: LineFrames, idx: np.ndarray, keys: KeyLookup, report: Report) -> List[Image]:
    """MEP frames (length:2 BE, then the envelope; an alert is 00 00, MEP
    guide p.9-17) through the legacy envelope's verification (MEP_ENVELOPE)."""
    start, end = lf.bounds[idx], lf.bounds[idx + 1]
    n = end - start
    length = (lf.data[start].astype(np.int64) << 8) | lf.data[np.minimum(start + 1, end - 1)]
    ok = (n >= 2) & (length == n - 2)
    bad = idx[~ok]
    _reject_each(
        report,
        "malformed",
        bad,
        lambda i: f"line {int(lf.line[i])}: MEP length does not match the frame",
    )
    if len(bad):
        report.frames["malformed"] += len(bad)
    pairs = np.array(
        _serial_pairs(lf, idx[ok], report, lambda f: f == b"\x00\x00"), dtype=np.int64
    ).reshape(-1, 2)
    q, s = pairs[:, 0], pairs[:, 1]
    x = _Exchanges(
        lf.device[q],
        lf.ts_ns[s],
        lf.bounds[q] + 2,
        lf.bounds[q + 1],
        lf.bounds[s] + 2,
        lf.bounds[s + 1],
        lf.devices,
    )
    plain = verify(lf.data, x, keys, report, MEP_ENVELOPE)
    return reassemble(to_reads(plain, report), report)


def _optical_images(lf: LineFrames, idx: np.ndarray, report: Report) -> List[Image]:
    """C12.18 packets (Optical Port Programmer's Guide p.8-10): a packet
    repeating the toggle bit of the one before it from the same side is a
    retransmission; multi-packet messages are joined (first packet bit 6,
    seq-nbr counting down to 0); reads (30 / 3F) with their responses
    (code count:2 data checksum, OPTICAL_SERVICES) become table reads.  The
    optical port authenticates by password at logon, so nothing here
    verifies a digest."""
    msgs: List[int] = []  # line index of each complete message's last packet
    apdus: Dict[int, bytes] = {}
    last_toggle: Dict[Tuple[int, int], int] = {}
    parts: Dict[Tuple[int, int], List[bytes]] = {}
    other = malformed = retrans = 0
    for i in idx.tolist():
        f = _frame(lf, i)
        if f in _ACK_NAK:
            other += 1
            continue
        side = (int(lf.device[i]), int(lf.direction[i]))
        try:
            p = optical.decode_packet(f)
        except OSGPError as exc:
            malformed += 1
            report.reject("malformed", f"line {int(lf.line[i])}: {exc}")
            continue
        if last_toggle.get(side) == p.toggle:
            retrans += 1
            continue
        last_toggle[side] = p.toggle
        if p.ctrl & optical.CTRL_MULTI and not p.ctrl & optical.CTRL_FIRST:
            if side not in parts:
                malformed += 1
                report.reject("malformed", f"line {int(lf.line[i])}: continuation without a first")
                continue
            parts[side].append(p.data)
        else:
            parts[side] = [p.data]
        if p.seq == 0:
            apdus[i] = b"".join(parts.pop(side))
            msgs.append(i)
        else:
            other += 1  # a packet of a message still coming: counted once here
    for name, n in (("other_pdu", other), ("malformed", malformed), ("retransmission", retrans)):
        if n:
            report.frames[name] += n
    pairs = _serial_pairs(lf, np.array(msgs, dtype=np.int64), report, lambda f: False)
    blob: List[bytes] = []
    rows: List[Tuple[int, int, int, int, int]] = []  # device, table, offset, length, ts
    for q, s in pairs:
        where = f"{_iso(int(lf.ts_ns[s]))} {lf.devices[int(lf.device[q])]}"
        if apdus[q][:1] not in _TABLE_SERVICES:  # identify, negotiate, logon, security ...
            report.capture["optical_session_services"] += 1
            continue
        try:
            req = messages.decode_request(apdus[q], messages.OPTICAL_SERVICES)
        except OSGPError as exc:
            report.reject("malformed", f"{where}: request: {exc}")
            continue
        if not isinstance(req, (messages.FullRead, messages.PartialRead)):
            report.writes += 1
            continue
        try:
            data = messages.response_data(apdus[s], req, messages.OPTICAL_SERVICES)
        except OSGPError as exc:
            reason = "device_error" if exc.__class__.__name__ == "DeviceError" else "malformed"
            report.reject(reason, f"{where}: {exc}")
            continue
        offset = req.offset if isinstance(req, messages.PartialRead) else -1
        rows.append((int(lf.device[q]), req.table, offset, len(data or b""), int(lf.ts_ns[s])))
        blob.append(data or b"")
    a = np.array(rows, dtype=np.int64).reshape(-1, 5)
    d0 = np.cumsum(a[:, 3]) - a[:, 3]
    buf = np.frombuffer(b"".join(blob) + b"\0", dtype=np.uint8)
    o = np.argsort(a[:, 4], kind="stable")
    reads = _Reads(buf, a[o, 0], a[o, 1], a[o, 2], d0[o], a[o, 3], a[o, 4], lf.devices)
    return reassemble(reads, report)
