"""MEP serial-port link (OSGP Alliance MEP Client Developer's Guide v1.1).

Frame (p.9-11)::

    request  <len:2 BE> <code> <args> <seq:4 BE> <digest:8>
    response <len:2 BE> <code> [<count:2 BE> <data>] <digest:8>
    0x0C     <len:2 BE> 0C <current seq:4 BE> <digest:8>
    alert    00 00  (zero length; once a second while conditions pend, p.17)

``len`` counts the bytes after itself; a message is at most 476 bytes (p.8).
Digest, sequence number and RC4 are the legacy suite with the MEP envelope
(:data:`osgp.security.suite.MEP_ENVELOPE`).  Timing rules (p.17-21) are plain
numbers in :class:`MepProfile`; nothing here reads a clock.

Public helpers checked from outside: :func:`encode_request`,
:func:`decode_response`; device side :func:`decode_request`,
:func:`encode_response`; stream deframing :class:`FrameReader`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, List, Tuple, Union

from osgp import _backend, crypto
from osgp.errors import AuthenticationError, ConfigurationError, MalformedError, TruncatedError
from osgp.link._cursor import as_bytes
from osgp.security.suite import MEP_ENVELOPE, LegacyContext, LegacySuite

__all__ = [
    "MepProfile",
    "PROFILE",
    "ALERT",
    "Alert",
    "encode_request",
    "decode_response",
    "decode_request",
    "encode_response",
    "frame",
    "unframe",
    "segments",
    "FrameReader",
]

LAYER = "mep"
ALERT = b"\x00\x00"

# Per-frame parse + digest check on the throughput path is native
# (csrc/osgp_frame.c; twin osgp._reference.frames).
_frames, _frames_native = _backend.load("frames")
mep_request_check = _frames.mep_request_check
mep_response_check = _frames.mep_response_check
mep_request_check_batch = _frames.mep_request_check_batch
mep_split = _frames.mep_split


@dataclass(frozen=True)
class MepProfile:
    """MEP wire profile (all CONFIRMED, MEP guide p.8-21).

    ``max_message``: bytes after the length field (p.8); ``segment_size`` and
    ``segment_gap_ms``: responses longer than 117 bytes go out in 117-byte
    pieces 25 ms apart (p.20); ``response_timeout_ms``: to the first two bytes
    (p.20); ``inter_byte_ms``: at least one byte per 50 ms inside a packet;
    ``min_request_interval_ms``: the server throttles to one request per 100 ms;
    ``alert_interval_ms``: alert repetition (p.17).
    """

    name: str = "MEP"
    status: str = "CONFIRMED (OSGP Alliance MEP guide v1.1)"
    length_size: int = 2
    max_message: int = 476
    segment_size: int = 117
    segment_gap_ms: int = 25
    response_timeout_ms: int = 500
    inter_byte_ms: int = 50
    min_request_interval_ms: int = 100
    alert_interval_ms: int = 1000


PROFILE = MepProfile()


class Alert:
    """The zero-length alert sequence (MEP p.17)."""

    def __repr__(self) -> str:
        return "Alert()"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Alert)

    __hash__ = object.__hash__


def frame(body: bytes, profile: MepProfile = PROFILE) -> bytes:
    """Prefix the 2-byte big-endian length (p.9)."""
    if len(body) > profile.max_message:
        raise MalformedError(
            f"message of {len(body)} bytes exceeds the {profile.max_message}-byte limit",
            layer=LAYER,
            offset=0,
        )
    return len(body).to_bytes(2, "big") + body


def unframe(data: Any, profile: MepProfile = PROFILE) -> bytes:
    """Body of exactly one frame (length prefix checked)."""
    b = as_bytes(data)
    if len(b) < 2:
        raise TruncatedError(layer=LAYER, offset=0, needed=2, remaining=len(b))
    n = int.from_bytes(b[:2], "big")
    if n > profile.max_message:
        raise MalformedError(
            f"length {n} exceeds the {profile.max_message}-byte limit", layer=LAYER, offset=0
        )
    if len(b) - 2 < n:
        raise TruncatedError(layer=LAYER, offset=2, needed=n, remaining=len(b) - 2)
    if len(b) - 2 > n:
        raise MalformedError(f"{len(b) - 2 - n} byte(s) after the frame", layer=LAYER, offset=2 + n)
    return b[2:]


def _suite(key: Any, encrypt: bool = False) -> LegacySuite:
    return LegacySuite(key, MEP_ENVELOPE, encrypt=encrypt)


def encode_request(key: Any, apdu: Any, seq: int, *, encrypt: bool = False) -> bytes:
    """Whole request frame (length included) for ``apdu`` (code + arguments)
    under the MEP access key ``key`` (16..20 bytes; the first 16 are used)."""
    if not encrypt:
        # fast path (the same bytes LegacySuite.seal_request produces)
        k = as_bytes(key)
        if not 16 <= len(k) <= 20:
            raise ConfigurationError(f"MEP key must be 16 to 20 bytes, got {len(k)}")
        plain = as_bytes(apdu) + (seq & 0xFFFFFFFF).to_bytes(4, "big")
        return frame(plain + crypto.oma_digest(k[:16], plain))
    wire, _ = _suite(key, encrypt).seal_request(as_bytes(apdu), seq)
    return frame(wire)


def _request_context(suite: LegacySuite, request_frame: Any) -> LegacyContext:
    # Recovers the plaintext (and whether it was encrypted) of our own request.
    _, _, ctx = suite.open_request(unframe(request_frame))
    return ctx


def decode_response(key: Any, request_frame: Any, response_frame: Any) -> bytes:
    """Verify the chained response digest (decrypting first when the request
    was encrypted) and return the response APDU.  Raises AuthenticationError
    on a bad digest, DecodeError subclasses on malformed frames."""
    try:
        # plaintext exchange: one native call parses both frames and checks the chain
        return mep_response_check(key, request_frame, response_frame)
    except AuthenticationError:
        pass  # encrypted exchange, 0x0B, or a real mismatch: the suite decides
    suite = _suite(key)
    body = unframe(response_frame)
    return suite.open_response(_request_context(suite, request_frame), body)


def decode_request(keys: Any, request_frame: Any) -> Tuple[bytes, int, LegacyContext]:
    """Device side: (apdu, seq, ctx) of a request frame; ``keys`` is one key or
    the list tried in order (MAK, then MBK; p.13)."""
    return _suite(keys).open_request(unframe(request_frame))


def encode_response(keys: Any, ctx: LegacyContext, apdu: Any) -> bytes:
    """Device side: the response frame to the request ``ctx`` came from."""
    return frame(_suite(keys).seal_response(ctx, as_bytes(apdu)))


def segments(frame_bytes: bytes, profile: MepProfile = PROFILE) -> List[bytes]:
    """Split a response into the pieces a server sends (117 bytes, p.20);
    the caller spaces them by ``profile.segment_gap_ms``."""
    n = profile.segment_size
    return [frame_bytes[i : i + n] for i in range(0, len(frame_bytes), n)] or [b""]


class FrameReader:
    """Stream deframer: feed received bytes in any pieces, get whole frame
    bodies (and :class:`Alert` for ``00 00``) back.  A length above the
    profile limit raises MalformedError and drops the buffer (resynchronise
    on the next timeout, as the guide's inter-byte rule implies)."""

    def __init__(self, profile: MepProfile = PROFILE) -> None:
        self.profile = profile
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        return len(self._buf)

    def reset(self) -> None:
        """Drop a partial frame (inter-byte timeout, p.20)."""
        self._buf.clear()

    def feed(self, data: Any) -> List[Union[bytes, Alert]]:
        if not self._buf and type(data) is bytes and len(data) > 2:
            # one whole frame, as a datagram or a single read delivers it
            n = (data[0] << 8) | data[1]
            if n == len(data) - 2 and n <= self.profile.max_message:
                return [data[2:]]
        self._buf += as_bytes(data)
        return list(self._drain())

    def _drain(self) -> Iterator[Union[bytes, Alert]]:
        buf = self._buf
        while len(buf) >= 2:
            n = (buf[0] << 8) | buf[1]
            if n == 0:
                del buf[:2]
                yield Alert()
                continue
            if n > self.profile.max_message:
                buf.clear()
                raise MalformedError(
                    f"length {n} exceeds the {self.profile.max_message}-byte limit",
                    layer=LAYER,
                    offset=0,
                )
            if len(buf) < 2 + n:
                return
            body = bytes(buf[2 : 2 + n])
            del buf[: 2 + n]
            yield body
