"""Capture archives: open (plain, gzip, zstd), walk, and take the LonTalk
frames out of their CN/IP-in-UDP packets.

The walk and the extraction are the ``capture`` kernels (native C with the
GIL released, or their pure-Python twins); a plain file is memory-mapped, so
the walk reads the page cache in place.  Compressed files are decompressed
into memory first (gzip: RFC 1952; zstd: RFC 8878, needs the ``zstandard``
package, ``pip install osgp[zstd]``).
"""

from __future__ import annotations

import gzip
import mmap
import os
from typing import Any, Dict, NamedTuple, Tuple

import numpy as np

from osgp import _backend
from osgp.errors import ConfigurationError, DecodeError

__all__ = ["Frames", "open_capture", "read_frames", "ZSTD_MAGIC", "GZIP_MAGIC"]

_capture, _ = _backend.load("capture")

GZIP_MAGIC = b"\x1f\x8b"  # RFC 1952 section 2.3.1
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"  # RFC 8878 section 3.1.1


class Frames(NamedTuple):
    """The LonTalk frames of one capture, packed: frame i is
    ``data[bounds[i]:bounds[i+1]]`` (an LPDU without CRC), captured at
    ``ts_ns[i]``; ``packet[i]``: its packet's index in the file."""

    data: np.ndarray
    bounds: np.ndarray
    ts_ns: np.ndarray
    packet: np.ndarray

    def __len__(self) -> int:
        return len(self.ts_ns)

    def frame(self, i: int) -> bytes:
        return self.data[self.bounds[i] : self.bounds[i + 1]].tobytes()


def open_capture(path: str | os.PathLike) -> Any:
    """The bytes of a capture file: a read-only memory map of a plain file,
    the decompressed bytes of a gzip or zstd one, b"" for an empty file."""
    with open(path, "rb") as f:
        head = f.read(4)
        if head[:2] == GZIP_MAGIC:
            f.seek(0)
            try:
                return gzip.decompress(f.read())
            except (OSError, EOFError) as exc:
                raise DecodeError(f"gzip: {exc}", layer="gzip", offset=0) from None
        if head == ZSTD_MAGIC:
            try:
                import zstandard
            except ImportError:
                raise ConfigurationError(
                    f"{os.fspath(path)} is zstd-compressed: pip install osgp[zstd]"
                ) from None
            f.seek(0)
            try:
                with zstandard.ZstdDecompressor().stream_reader(f) as r:
                    return r.read()
            except zstandard.ZstdError as exc:
                raise DecodeError(f"zstd: {exc}", layer="zstd", offset=0) from None
        if not head:
            return b""
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


def read_frames(data: Any, *, strict: bool = True) -> Tuple[Frames, Dict[str, Any]]:
    """Every CN/IP LonTalk frame of a capture buffer, and what the walk
    found: the walker's counts (``info``) plus ``cnip``, the packets by
    extraction status (``ok``, ``other``, ``fragment``, ``truncated``,
    ``malformed``)."""
    ts, off, length, iface, info = _capture.walk(data, strict)
    linktypes = np.asarray(info["linktypes"], dtype=np.uint16)
    lpdus, bounds, status = _capture.cnip_extract(data, off, length, iface, linktypes)
    counts = np.bincount(status, minlength=16)
    info["cnip"] = {
        "ok": int(counts[_capture.OK]),
        "other": int(counts[_capture.OTHER]),
        "fragment": int(counts[_capture.FRAGMENT]),
        "truncated": int(counts[_capture.TRUNCATED]),
        "malformed": int(counts[_capture.MALFORMED]),
    }
    keep = np.flatnonzero(status == _capture.OK)
    # the packed LPDUs of the kept packets are contiguous already: their
    # bounds are the start of each and the end of the last
    b = np.empty(len(keep) + 1, dtype=np.int64)
    b[:-1] = bounds[keep]
    b[-1] = bounds[-1]
    return Frames(lpdus, b, ts[keep], keep.astype(np.int64)), info
