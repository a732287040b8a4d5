"""Load profile (BT60..BT67, ET21) to numpy arrays and Arrow tables.

    lp = osgp.loadprofile.decode(bt61, bt62, bt63, bt64, bt00=bt00)
    lp.timestamps   # datetime64[s], interval end times (UTC), chronological
    lp.values       # int64 [intervals, channels] as recorded
    lp.scaled       # float64 after scalars / divisors (BT62), computed on first access
    lp.status       # uint8 [intervals, channels]: extended channel status nibbles
    lp.flags        # uint8 [intervals]: common flags (FLAG_DST | FLAG_POWER_FAIL | ...)

Layout ([OPT p.31-39], docs/protocol.md §7.7): BT61 gives per data set the number of
blocks, intervals per block, channels and interval time; BT62 the channel
sources, INT_FMT_CDE and optional scalars/divisors; BT63 where the circular
block list starts and ends; BT64+k the blocks
``BLK_END_TIME | END_READINGS | SIMPLE_INT_STATUS | intervals{EXT_STATUS, INT_DATA}``.
ET21 (NES) gives the physical geometry and wins over the computed one
([OPT p.38]: "use ET21 ... as the authoritative geometry").

Only recorded intervals are returned: the simple status bit is set and the
interval lies at or before the last recorded one (BT63 NBR_VALID_INT for the
newest block); the kernel keeps them in one pass into arrays allocated once.
The block decoder is native (csrc/osgp_lp.c) with a Python twin; choices the
public record leaves open are in :class:`LoadProfileProfile`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, List, NamedTuple, Optional, Sequence

import numpy as np

from osgp import _backend, tables
from osgp.errors import ConfigurationError, DecodeError, MalformedError, TruncatedError

_kernel, _kernel_native = _backend.load("tables")

NONE = 0xFFFFFFFF

#: Common extended-status flags ([OPT p.36]: nibble bit 0 DST, 1 power fail,
#: 2 clock reset forward, 3 clock reset backward).
FLAG_DST = 1
FLAG_POWER_FAIL = 2
FLAG_CLOCK_FORWARD = 4
FLAG_CLOCK_BACKWARD = 8

#: Channel status nibble codes: ANSI 0..7 and the NES additions ([OPT p.36-38],
#: docs/protocol.md §7.7).
CHANNEL_STATUS = {
    0: "no status",
    1: "overflow",
    2: "partial interval",
    3: "long interval",
    4: "skipped",
    5: "test mode",
    6: "configuration changed",
    7: "load profile stopped",
    8: "M-Bus/MEP decryption failure",
    9: "clock error",
    10: "M-Bus/MEP device missing",
    11: "not current",
    12: "skipped (load profile opt-out)",
    15: "M-Bus placeholder",
}

#: INT_FMT_CDE (BT62, docs/protocol.md §7.7) -> (bytes, numpy dtype of the raw value)
INT_FMT_CODES = {
    1: (1, "u1"),
    2: (2, "<u2"),
    4: (4, "<u4"),
    8: (1, "i1"),
    16: (2, "<i2"),
    32: (4, "<i4"),
    64: (None, None),
    128: (None, None),
}


@dataclass(frozen=True)
class LoadProfileProfile:
    """Choices the public record leaves open.  All **INFERRED** unless noted.

    * ``full_block_last``: the last recorded interval of a complete (older)
      block is its final slot (docs/protocol.md §7.7: ``k = NBR_BLK_INTS - 1``), so
      interval i of a block ends at ``BLK_END_TIME - (k - i) * interval``.
      False: k = the highest interval whose simple-status bit is set ([OPT
      p.36]: BLK_END_TIME is "the most recently recorded interval").
    * ``day_interval_code``: MAX_INT_TIME value meaning 24 h (84, CONFIRMED for
      NES [OPT p.33]); other values are minutes.
    * ``common_flags_high_nibble``: the common flags are bits 4..7 of status
      byte 0 with flag bit 0 = DST in bit 4 (False: DST in bit 7, the nibble
      read most significant bit first).
    * ``descending_newest_first``: with BT63 INTERVAL_ORDER = 1 the newest
      interval is stored in slot 0 (False: ignore INTERVAL_ORDER).
    * Not configurable, also INFERRED: FIXED_BCD NI values are read most
      significant byte first; FLOAT NI interval values are returned as float64
      in ``values``.
    * ``scale``: ``scaled = raw * scalar / divisor`` (BT62 text: "applied to
      interval data before being recorded" [OPT p.34]); NI_FORMAT 4 values
      are further multiplied by 1e-4 (4 implied decimals).
    """

    full_block_last: bool = True
    day_interval_code: int = 84
    common_flags_high_nibble: bool = True
    descending_newest_first: bool = True


DEFAULT_PROFILE = LoadProfileProfile()


class Geometry(NamedTuple):
    """Physical block layout handed to the block decoder (offsets in bytes;
    0xFFFFFFFF = field absent).  Same field order as ``osgp_lp_geometry``."""

    block_size: int
    nint: int
    nch: int
    time_off: int
    tm_format: int
    simple_off: int
    int0_off: int
    int_size: int
    ext_off: int
    ch0_off: int
    fmt_code: int
    ni_format: int
    interval_s: int
    descending: int


class LoadProfile:
    """Decoded load profile of one data set (one row per recorded interval).

    ``timestamps`` (datetime64[s] interval end, UTC), ``values`` (int64
    [n, nch]; float64 for FLOAT NI formats), ``status`` (uint8 [n, nch]) and
    ``flags`` (uint8 [n]) are decoded by the call; ``scaled`` (float64
    [n, nch]) and ``block_seq`` (uint32 [n]: BT63 sequence number of the
    row's block) are computed from them on first access and then kept."""

    def __init__(
        self,
        timestamps: np.ndarray,
        values: np.ndarray,
        scaled: Optional[np.ndarray],
        status: np.ndarray,
        flags: np.ndarray,
        block_seq: Optional[np.ndarray],
        geometry: Geometry,
        sources: tuple = (),
        scalars: Optional[np.ndarray] = None,
        divisors: Optional[np.ndarray] = None,
        meta: Optional[dict] = None,
        *,
        scale: Optional[np.ndarray] = None,
        implied: float = 1.0,
        block_rows: Optional[tuple[np.ndarray, np.ndarray]] = None,
    ) -> None:
        """``scaled=None``: ``values * scale * implied`` when read; ``block_seq=None``:
        ``block_rows`` = (sequence number per block, rows per block)."""
        self.timestamps, self.values, self.status, self.flags = timestamps, values, status, flags
        self.geometry, self.sources, self.scalars, self.divisors = (
            geometry,
            sources,
            scalars,
            divisors,
        )
        self.meta: dict = meta if meta is not None else {}
        self._scaled, self._scale, self._implied = scaled, scale, implied
        self._block_seq, self._block_rows = block_seq, block_rows

    def __repr__(self) -> str:
        return f"<LoadProfile {len(self)} rows x {self.channels} channels>"

    def __len__(self) -> int:
        return len(self.timestamps)

    @property
    def channels(self) -> int:
        return self.geometry.nch

    @property
    def scaled(self) -> np.ndarray:
        if self._scaled is None:
            out = self.values.astype(np.float64)
            if self._scale is not None:
                out *= self._scale
            if self._implied != 1.0:
                out *= self._implied
            self._scaled = out
        return self._scaled

    @property
    def block_seq(self) -> np.ndarray:
        if self._block_seq is None:
            seqs, counts = self._block_rows  # type: ignore[misc]
            self._block_seq = np.repeat(seqs, counts)
        return self._block_seq

    def to_arrow(self) -> Any:
        """A ``pyarrow.Table``: timestamp (UTC), flags, block_seq and per channel
        ``chN`` (raw), ``chN_scaled``, ``chN_status`` (needs pyarrow)."""
        try:
            import pyarrow as pa
        except ImportError:  # pragma: no cover - optional dependency
            raise ConfigurationError("to_arrow() needs pyarrow (pip install osgp[arrow])") from None
        cols = {
            "timestamp": pa.array(self.timestamps.astype("int64"), pa.timestamp("s", tz="UTC")),
            "flags": pa.array(self.flags),
            "block_seq": pa.array(self.block_seq),
        }
        for c in range(self.channels):
            cols[f"ch{c}"] = pa.array(self.values[:, c])
            cols[f"ch{c}_scaled"] = pa.array(self.scaled[:, c])
            cols[f"ch{c}_status"] = pa.array(self.status[:, c])
        return pa.table(cols)


# ---- geometry ---------------------------------------------------------------------------------


def _as_table(name: str, data: Any, context: dict) -> Mapping:
    if not isinstance(data, (bytes, bytearray, memoryview)) and isinstance(data, Mapping):
        return data
    return tables.decode(name, data, context)


_mal = MalformedError.in_table


def interval_seconds(max_int_time: int, profile: LoadProfileProfile = DEFAULT_PROFILE) -> int:
    if max_int_time == profile.day_interval_code:
        return 86400
    return 60 * max_int_time


def geometry(
    bt61: Mapping,
    bt62: Mapping,
    *,
    tm_format: int = 2,
    ni_formats: tuple = (8, 8),
    set_index: int = 0,
    interval_order: int = 0,
    et21: Optional[Mapping] = None,
    profile: LoadProfileProfile = DEFAULT_PROFILE,
) -> Geometry:
    """Block geometry of data set ``set_index`` from decoded BT61/BT62 (and ET21)."""
    sets = bt61["LP_DATA_SETS"]
    if not 0 <= set_index < len(sets):
        raise ConfigurationError(f"BT61 describes {len(sets)} data set(s), no set {set_index}")
    s = sets[set_index]
    k = set_index + 1
    nch, nint = s["NBR_CHNS_SET"], s["NBR_BLK_INTS_SET"]
    flags = bt61["LP_FLAGS"]
    code = bt62.get(f"INT_FMT_CDE{k}")
    sel_off = sum(3 * sets[j]["NBR_CHNS_SET"] for j in range(set_index))
    if code not in INT_FMT_CODES:
        raise _mal("BT62", f"INT_FMT_CDE{k}", sel_off + 3 * nch, f"unknown format code {code}")
    ni = ni_formats[0] if code == 64 else ni_formats[1]
    width = INT_FMT_CODES[code][0] or tables_ni_width(ni)
    if width <= 0:
        raise _mal("BT62", f"INT_FMT_CDE{k}", sel_off + 3 * nch, f"NI_FORMAT {ni} is unknown")
    if nint == 0:
        raise _mal("BT61", "NBR_BLK_INTS_SET", 9 + 6 * set_index, "zero intervals per block")
    if not 0 <= tm_format <= 4:
        raise ConfigurationError(f"unknown TM_FORMAT {tm_format}")
    tw = (0, 5, 5, 4, 4)[tm_format]  # STIME_DATE width (docs/protocol.md §7.1)
    er = (tables_ni_width(ni_formats[0]) if flags["BLK_END_READ_FLAG"] else 0) + (
        4 if flags["BLK_END_PULSE_FLAG"] else 0
    )
    simple = flags["SIMPLE_INT_STATUS_FLAG"]
    ext = nch // 2 + 1 if flags["EXTENDED_INT_STATUS_FLAG"] else 0
    simple_off = tw + nch * er
    int0 = simple_off + ((nint + 7) // 8 if simple else 0)
    int_size = ext + nch * width
    g = Geometry(
        int0 + nint * int_size,
        nint,
        nch,
        0,
        tm_format,
        simple_off if simple else NONE,
        int0,
        int_size,
        0 if ext else NONE,
        ext,
        code,
        ni,
        interval_seconds(s["MAX_INT_TIME_SET"], profile),
        1 if (interval_order and profile.descending_newest_first) else 0,
    )
    if et21 is not None:
        g = _apply_et21(g, et21, set_index, width, profile)
    return g


def tables_ni_width(fmt: int) -> int:
    return (8, 4, 12, 6, 4, 6, 4, 3, 4, 5, 6, 8, 8, 21)[fmt] if 0 <= fmt < 14 else -1


def _apply_et21(
    g: Geometry, et21: Mapping, set_index: int, width: int, profile: LoadProfileProfile
) -> Geometry:
    recs = et21["DATA_SETS"]
    if set_index >= len(recs):
        raise ConfigurationError(f"ET21 has {len(recs)} data set record(s), no set {set_index}")
    r = recs[set_index]
    base = set_index * tables.DEFAULT_PROFILE.et21_record_size
    if r["NBR_CHANNELS"] != g.nch:
        raise _mal(
            "ET21",
            "NBR_CHANNELS",
            base + 28,
            f"ET21 logs {r['NBR_CHANNELS']} channels, BT61 says {g.nch}",
        )
    g = g._replace(
        block_size=r["BLOCK_SIZE"],
        simple_off=r["SIMPLE_STATUS_OFFSET"] if g.simple_off != NONE else NONE,
        int0_off=r["INTERVAL0_OFFSET"],
        int_size=r["INTERVAL_SIZE"],
        ch0_off=r["CHANNEL0_OFFSET"],
    )
    checks = (
        ("BLOCK_SIZE", 8, g.int0_off + g.nint * g.int_size <= g.block_size),
        (
            "SIMPLE_STATUS_OFFSET",
            22,
            g.simple_off == NONE or g.simple_off + (g.nint + 7) // 8 <= g.block_size,
        ),
        ("INTERVAL_SIZE", 25, g.ch0_off + g.nch * width <= g.int_size),
        ("CHANNEL0_OFFSET", 26, g.ext_off == NONE or g.nch // 2 + 1 <= g.ch0_off),
    )
    for name, off, ok in checks:
        if not ok:
            raise _mal("ET21", name, base + off, "block geometry does not fit")
    return g


# ---- block order ------------------------------------------------------------------------------


def block_order(
    nbr_blks: int, status: Mapping, *, unread_only: bool = False, set_index: int = 0
) -> tuple[list[int], list[int]]:
    """Chronological block indices and the BT63 sequence number of each (circular
    list arithmetic, [OPT p.31, 34-35])."""
    idx, seqs = _block_order(nbr_blks, status, unread_only, set_index)
    return idx.tolist(), seqs.tolist()


def _block_order(
    nbr_blks: int, status: Mapping, unread_only: bool, set_index: int
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`block_order` as uint32 arrays."""
    base = 13 * set_index
    nvalid, last = status["NBR_VALID_BLOCKS"], status["LAST_BLOCK_ELEMENT"]
    if nvalid > nbr_blks:
        raise _mal(
            "BT63", "NBR_VALID_BLOCKS", base + 1, f"{nvalid} valid blocks, BT61 allows {nbr_blks}"
        )
    if nvalid and last >= nbr_blks:
        raise _mal(
            "BT63",
            "LAST_BLOCK_ELEMENT",
            base + 3,
            f"block {last} outside the {nbr_blks}-block list",
        )
    n = nvalid
    if unread_only:
        unread = status["NBR_UNREAD_BLOCKS"]
        if unread > nbr_blks:
            raise _mal(
                "BT63",
                "NBR_UNREAD_BLOCKS",
                base + 9,
                f"{unread} unread blocks, BT61 allows {nbr_blks}",
            )
        n = min(n, unread)
    descending = status["LP_SET_STATUS_FLAGS"]["BLOCK_ORDER"]
    back = np.arange(n - 1, -1, -1, dtype=np.int64)  # oldest of the n returned first
    idx = (last + back if descending else last - back) % max(nbr_blks, 1)
    seqs = (status["LAST_BLOCK_SEQ_NBR"] - back) & 0xFFFFFFFF
    return idx.astype(np.uint32), seqs.astype(np.uint32)


# ---- decode -----------------------------------------------------------------------------------


def _context(bt00: Any, bt61: Any) -> dict:
    ctx: dict = {}
    if bt00 is not None:
        ctx["BT00"] = bt00
    if bt61 is not None:
        ctx["BT61"] = bt61
    return ctx


def _empty(g: Geometry, rows: int) -> tuple[np.ndarray, ...]:
    return (
        np.empty((rows, g.nch), np.int64),
        np.empty((rows, g.nch), np.uint8),
        np.empty(rows, np.uint8),
        np.empty(rows, np.int64),
        np.empty(rows, np.uint8),
    )


def decode_blocks(
    g: Geometry,
    data: Any,
    blocks: Any,
    lasts: Any = None,
    *,
    table: str = "BT64",
    out: Optional[tuple] = None,
) -> tuple[np.ndarray, ...]:
    """Dense decode of ``blocks`` (chronological indices into ``data``):
    (values, status, flags, times, valid), ``len(blocks) * nint`` rows each.
    ``out`` = preallocated arrays of that shape (reused, no allocation); its
    values array may be int32 instead of int64 when INT_FMT_CDE is 1, 2, 8, 16
    or 32 (every value fits; the NES INT32 case), which halves the bytes written."""
    bl = np.ascontiguousarray(blocks, dtype=np.uint32)
    ll = None if lasts is None else np.ascontiguousarray(lasts, dtype=np.uint32)
    rows = len(bl) * g.nint
    arrs = out if out is not None else _empty(g, rows)
    try:
        _kernel.lp_decode(tuple(g), data, bl, ll, *arrs)
    except DecodeError as exc:
        raise _rewrap_block(exc, table, g) from None
    return arrs


def _rewrap_block(exc: DecodeError, table: str, g: Geometry) -> DecodeError:
    blk = exc.pc or 0
    off = exc.offset or 0
    where = off - (off // g.block_size) * g.block_size if g.block_size else off
    field = (
        "BLK_END_TIME"
        if where < g.int0_off and isinstance(exc, MalformedError)
        else ("LP_BLOCKS" if isinstance(exc, TruncatedError) else "INT_DATA")
    )
    if isinstance(exc, TruncatedError):
        return TruncatedError(
            f"field {field}[{blk}]: truncated, need {exc.needed} byte(s), {exc.remaining} left",
            layer=f"table {table}",
            offset=off,
            needed=exc.needed,
            remaining=exc.remaining,
            table=table,
            field=field,
            pc=exc.pc,
            meter=exc.meter,
        )
    return MalformedError(
        f"field {field} (block {blk}): impossible value",
        layer=f"table {table}",
        offset=off,
        table=table,
        field=field,
        pc=exc.pc,
        meter=exc.meter,
    )


def decode(
    bt61: Any,
    bt62: Any,
    bt63: Any,
    bt64: Any,
    *,
    bt00: Any = None,
    et21: Any = None,
    set_index: int = 0,
    unread_only: bool = False,
    profile: LoadProfileProfile = DEFAULT_PROFILE,
) -> LoadProfile:
    """Decode data set ``set_index`` (``bt64`` = the BT64+set_index image).

    Tables are raw bytes (or mappings from :func:`osgp.tables.decode`).  With
    ``unread_only`` only the BT63 NBR_UNREAD_BLOCKS newest blocks are decoded
    (incremental collection, [OPT p.34-35])."""
    cfg = _config(bt00, bt61, bt62, et21, set_index, profile)
    t63 = _as_table("BT63", bt63, cfg.ctx)
    sets = t63["LP_STATUS_SETS"]
    if set_index >= len(sets):
        raise ConfigurationError(f"BT63 describes {len(sets)} data set(s), no set {set_index}")
    st = sets[set_index]
    g = cfg.geometry
    if st["LP_SET_STATUS_FLAGS"]["INTERVAL_ORDER"] and profile.descending_newest_first:
        g = g._replace(descending=1)
    idx, seqs = _block_order(cfg.nbr_blks, st, unread_only, set_index)
    nvi = st["NBR_VALID_INT"]
    if nvi > g.nint:
        raise _mal(
            "BT63",
            "NBR_VALID_INT",
            13 * set_index + 11,
            f"{nvi} valid intervals, a block holds {g.nint}",
        )
    lasts = np.full(len(idx), g.nint - 1, np.uint32)
    if len(idx):
        if nvi == 0:  # newest block has nothing recorded yet
            idx, seqs, lasts = idx[:-1], seqs[:-1], lasts[:-1]
        else:
            lasts[-1] = nvi - 1
    table = f"BT{64 + set_index}"
    data = bt64
    if not isinstance(data, (bytes, bytearray, memoryview)) and isinstance(data, Mapping):
        raise ConfigurationError("bt64 must be the raw table image")
    if not profile.full_block_last and g.simple_off != NONE:
        lasts = _last_recorded(data, g, idx, lasts)
    if g.fmt_code >= 64 and g.ni_format in (2, 3, 13):
        # FLOAT_CHAR values are text: the kernel decodes everything else densely
        # with a one-byte stand-in format, the text is parsed here
        dense = decode_blocks(g._replace(fmt_code=1), data, idx, lasts, table=table)
        ok = dense[4].astype(bool)
        values = _float_char_rows(data, g, idx, lasts, ok, table)
        status, flags, times = dense[1][ok], dense[2][ok], dense[3][ok]
        counts = ok.reshape(len(idx), g.nint).sum(axis=1)
    else:
        rows = len(idx) * g.nint
        # every output allocated once at its largest size; the kernel keeps the
        # valid rows only (one pass) and counts them per block
        values = np.empty((rows, g.nch), np.int64)
        status = np.empty((rows, g.nch), np.uint8)
        flags = np.empty(rows, np.uint8)
        times = np.empty(rows, np.int64)
        counts = np.empty(len(idx), np.uint32)
        scratch = np.empty(g.nint, np.uint8)
        try:
            n = _kernel.lp_decode(
                tuple(g), data, idx, lasts, values, status, flags, times, scratch, counts
            )
        except DecodeError as exc:
            raise _rewrap_block(exc, table, g) from None
        values, status, flags, times = values[:n], status[:n], flags[:n], times[:n]
        if g.fmt_code >= 64 and g.ni_format in (0, 1):
            values = values.view(np.float64)
    if not profile.common_flags_high_nibble:
        flags = _NIBBLE_REVERSE[flags]
    return LoadProfile(
        times.view("datetime64[s]"),
        values,
        None,
        status,
        flags,
        None,
        g,
        cfg.sources,
        cfg.scalars,
        cfg.divisors,
        {
            "blocks": idx.tolist(),
            "block_seq": seqs.tolist(),
            "nbr_valid_int": nvi,
            "interval_s": g.interval_s,
        },
        scale=cfg.scale,
        implied=_implied(g),
        block_rows=(seqs, counts),
    )


class _Config(NamedTuple):
    """What BT00/BT61/BT62 (and ET21) say about one data set."""

    ctx: dict
    geometry: Geometry
    nbr_blks: int
    scalars: Optional[np.ndarray]
    divisors: Optional[np.ndarray]
    scale: Optional[np.ndarray]
    sources: tuple


_CONFIG_CACHE: dict = {}
_CONFIG_CACHE_SIZE = 256


def _config(
    bt00: Any, bt61: Any, bt62: Any, et21: Any, set_index: int, profile: LoadProfileProfile
) -> _Config:
    """Decode the configuration tables once per configuration: [OPT p.30] "This
    information needs to be read only once per load profile reconfiguration",
    so results are cached by the tables' bytes (ET21 changes as data is logged)."""
    key = None
    if all(x is None or type(x) is bytes for x in (bt00, bt61, bt62, et21)):
        key = (bt00, bt61, bt62, et21, set_index, profile)
        hit = _CONFIG_CACHE.get(key)
        if hit is not None:
            return hit
    ctx: dict = {}
    t00 = _as_table("BT00", bt00, ctx) if bt00 is not None else None
    if t00 is not None:
        ctx["BT00"] = t00
    t61 = _as_table("BT61", bt61, ctx)
    ctx["BT61"] = t61
    t62 = _as_table("BT62", bt62, ctx)
    t21 = _as_table("ET21", et21, ctx) if et21 is not None else None
    dflt = tables.DEFAULT_PROFILE
    tm = t00["FORMAT_CONTROL_2"]["TM_FORMAT"] if t00 is not None else dflt.tm_format
    nif = (
        (t00["FORMAT_CONTROL_3"]["NI_FORMAT1"], t00["FORMAT_CONTROL_3"]["NI_FORMAT2"])
        if t00 is not None
        else (dflt.ni_format1, dflt.ni_format2)
    )
    g = geometry(
        t61, t62, tm_format=tm, ni_formats=nif, set_index=set_index, et21=t21, profile=profile
    )
    k = set_index + 1
    scalars = divisors = scale = None
    if t61["LP_FLAGS"][f"SCALAR_DIVISOR_FLAG_SET{k}"]:
        scalars = np.asarray(t62[f"SCALARS_SET{k}"], dtype=np.float64)
        divisors = np.asarray(t62[f"DIVISOR_SET{k}"], dtype=np.float64)
        if np.any(divisors == 0):
            c = int(np.argmin(divisors != 0))
            sets = t61["LP_DATA_SETS"]
            off = (
                sum(
                    3 * sets[j]["NBR_CHNS_SET"]
                    + 1
                    + (
                        4 * sets[j]["NBR_CHNS_SET"]
                        if t61["LP_FLAGS"][f"SCALAR_DIVISOR_FLAG_SET{j + 1}"]
                        else 0
                    )
                    for j in range(set_index)
                )
                + 3 * g.nch
                + 1
                + 2 * g.nch
                + 2 * c
            )
            raise _mal("BT62", f"DIVISOR_SET{k}[{c}]", off, "divisor 0")
        scale = scalars / divisors
    sources = tuple(ch["LP_SOURCE_SELECT"] for ch in t62.get(f"LP_SEL_SET{k}", ()))
    cfg = _Config(
        ctx, g, t61["LP_DATA_SETS"][set_index]["NBR_BLKS_SET"], scalars, divisors, scale, sources
    )
    if key is not None:
        if len(_CONFIG_CACHE) >= _CONFIG_CACHE_SIZE:
            _CONFIG_CACHE.clear()
        _CONFIG_CACHE[key] = cfg
    return cfg


def _float_char_rows(
    data: Any, g: Geometry, idx: np.ndarray, lasts: np.ndarray, ok: np.ndarray, table: str
) -> np.ndarray:
    """float64 values of the valid rows (``ok``, dense) of FLOAT_CHAR6/12/21
    interval data (NI_FORMAT 3/2/13, ASCII numbers, docs/protocol.md §7.1)."""
    buf = bytes(memoryview(data).cast("B"))
    w = tables_ni_width(g.ni_format)
    out = np.empty((int(ok.sum()), g.nch), np.float64)
    n = 0
    for b, blk in enumerate(idx.tolist()):
        last = int(lasts[b])
        for j in range(g.nint):
            if not ok[b * g.nint + j]:
                continue
            s = last - j if (g.descending and j <= last) else j
            base = blk * g.block_size + g.int0_off + s * g.int_size + g.ch0_off
            for c in range(g.nch):
                raw = buf[base + c * w : base + (c + 1) * w]
                txt = raw.decode("latin-1").strip(" \0")
                try:
                    out[n, c] = float(txt) if txt else 0.0
                except ValueError:
                    raise _mal(
                        table, "INT_DATA", base + c * w, f"FLOAT_CHAR value {txt!r} is not a number"
                    ) from None
            n += 1
    return out


_NIBBLE_REVERSE = np.array([int(f"{i:04b}"[::-1], 2) for i in range(16)], dtype=np.uint8)


def _last_recorded(data: Any, g: Geometry, idx: np.ndarray, lasts: np.ndarray) -> np.ndarray:
    """Alternative reading of BLK_END_TIME for complete blocks: the end of the
    highest interval whose simple-status bit is set (LoadProfileProfile)."""
    buf = memoryview(data).cast("B")
    out = lasts.copy()
    nbytes = (g.nint + 7) // 8
    for k, b in enumerate(idx[:-1].tolist()):  # the newest block keeps BT63 NBR_VALID_INT
        off = b * g.block_size + g.simple_off
        if off + nbytes > len(buf):
            continue  # the block decoder reports the truncation
        bits = int.from_bytes(buf[off : off + nbytes], "little") & ((1 << g.nint) - 1)
        if bits:
            out[k] = bits.bit_length() - 1
    return out


def read_plan(
    bt61: Any,
    bt63: Any,
    *,
    bt00: Any = None,
    et21: Any = None,
    bt62: Any = None,
    set_index: int = 0,
    unread_only: bool = True,
    profile: LoadProfileProfile = DEFAULT_PROFILE,
) -> list[tuple[int, int]]:
    """Partial reads ``(offset, count)`` of BT64+set that fetch the unread (or
    all valid) blocks, oldest first ([OPT p.31] offset = block index x block size)."""
    ctx = _context(bt00, bt61)
    t61 = _as_table("BT61", bt61, ctx)
    t63 = _as_table("BT63", bt63, ctx)
    st = t63["LP_STATUS_SETS"][set_index]
    if et21 is not None:
        size = _as_table("ET21", et21, ctx)["DATA_SETS"][set_index]["BLOCK_SIZE"]
    elif bt62 is not None:
        t00 = _as_table("BT00", bt00, ctx) if bt00 is not None else None
        tm = t00["FORMAT_CONTROL_2"]["TM_FORMAT"] if t00 is not None else 2
        size = geometry(
            t61, _as_table("BT62", bt62, ctx), tm_format=tm, set_index=set_index, profile=profile
        ).block_size
    else:
        raise ConfigurationError("read_plan needs ET21 or BT62 for the block size")
    idx, _ = block_order(
        t61["LP_DATA_SETS"][set_index]["NBR_BLKS_SET"],
        st,
        unread_only=unread_only,
        set_index=set_index,
    )
    return [(i * size, size) for i in idx]


def decode_many(
    g: Geometry,
    datas: Sequence[Any],
    blocks: Sequence[Any],
    lasts: Optional[Sequence[Any]] = None,
    *,
    out: Optional[tuple] = None,
) -> tuple[tuple[np.ndarray, ...], list[int]]:
    """Batch kernel: many meters with one geometry in one call without the GIL.
    Meter i's rows are ``offsets[i]:offsets[i+1]`` of the dense output
    (values, status, flags, times, valid)."""
    bl = [np.ascontiguousarray(b, dtype=np.uint32) for b in blocks]
    ll = None if lasts is None else [np.ascontiguousarray(x, dtype=np.uint32) for x in lasts]
    rows = sum(len(b) for b in bl) * g.nint
    arrs = out if out is not None else _empty(g, rows)
    try:
        offs = _kernel.lp_decode_batch(tuple(g), datas, bl, ll, *arrs)
    except DecodeError as exc:
        raise _rewrap_block(exc, "BT64", g) from None
    return arrs, offs


class LoadProfiles(NamedTuple):
    """Load profiles of many meters sharing one configuration, as columns: the
    rows of meter i are ``offsets[i]:offsets[i+1]`` (as :class:`LoadProfile`,
    valid rows only, chronological per meter); ``geometry`` is the shared
    configuration's (``descending`` stays 0: interval order is each meter's
    own, in its BT63); ``scale`` (float64 [nch] or None) and ``implied`` give
    ``scaled = values * scale * implied``."""

    timestamps: np.ndarray
    values: np.ndarray
    status: np.ndarray
    flags: np.ndarray
    offsets: np.ndarray
    geometry: Geometry
    scale: Optional[np.ndarray]
    implied: float

    @property
    def scaled(self) -> np.ndarray:
        out = self.values.astype(np.float64)
        if self.scale is not None:
            out *= self.scale
        if self.implied != 1.0:
            out *= self.implied
        return out


def decode_images(
    bt61: Any,
    bt62: Any,
    bt63s: Sequence[Any],
    bt64s: Sequence[Any],
    *,
    bt00: Any = None,
    et21: Any = None,
    set_index: int = 0,
    unread_only: bool = False,
    profile: LoadProfileProfile = DEFAULT_PROFILE,
    int32: bool = False,
) -> LoadProfiles:
    """:func:`decode` of many meters at once: meter i's BT63 and BT64+set images
    are ``bt63s[i]`` and ``bt64s[i]``, the configuration tables shared.  BT63
    is decoded as columns, the block order computed as arrays and every block
    decoded by one kernel call without the GIL (no Python object per meter or
    block).  ``int32``: values as int32 when INT_FMT_CDE is 1, 2, 8, 16 or 32
    (every value fits; half the bytes).  An error names the meter's index as
    ``meter``."""
    n = len(bt64s)
    if len(bt63s) != n:
        raise ConfigurationError("one BT63 image per BT64 image")
    cfg = _config(bt00, bt61, bt62, et21, set_index, profile)
    g = cfg.geometry
    sets = tables.decode_columns(63, bt63s, cfg.ctx) if n else {}
    if n and sets["LP_STATUS_SETS.NBR_VALID_BLOCKS"].shape[1] <= set_index:
        raise ConfigurationError(f"BT63 describes too few data sets, no set {set_index}")
    descending = n and sets["LP_STATUS_SETS.LP_SET_STATUS_FLAGS.INTERVAL_ORDER"][:, set_index].any()
    if (
        (g.fmt_code >= 64 and g.ni_format in (2, 3, 13))
        or (not profile.full_block_last and g.simple_off != NONE)
        or (descending and profile.descending_newest_first)
    ):
        # the cases :func:`decode` treats per meter (FLOAT_CHAR text, the other
        # block end reading, newest interval first): one call per meter
        return _decode_each(bt61, bt62, bt63s, bt64s, bt00, et21, set_index, unread_only, profile)

    def col(name: str) -> np.ndarray:
        if not n:
            return np.zeros(0, np.int64)
        return sets["LP_STATUS_SETS." + name][:, set_index].astype(np.int64)

    nvalid, last, nvi = col("NBR_VALID_BLOCKS"), col("LAST_BLOCK_ELEMENT"), col("NBR_VALID_INT")
    base = 13 * set_index
    _check_each(
        nvalid > cfg.nbr_blks, "NBR_VALID_BLOCKS", base + 1, "more valid blocks than BT61 allows"
    )
    _check_each(
        (nvalid > 0) & (last >= cfg.nbr_blks),
        "LAST_BLOCK_ELEMENT",
        base + 3,
        "block outside the list",
    )
    _check_each(nvi > g.nint, "NBR_VALID_INT", base + 11, "more valid intervals than a block holds")
    count = nvalid
    if unread_only:
        unread = col("NBR_UNREAD_BLOCKS")
        _check_each(
            unread > cfg.nbr_blks,
            "NBR_UNREAD_BLOCKS",
            base + 9,
            "more unread blocks than BT61 allows",
        )
        count = np.minimum(nvalid, unread)
    keep = count - ((count > 0) & (nvi == 0))  # a newest block with nothing recorded is left out
    starts = np.zeros(n + 1, np.int64)
    np.cumsum(keep, out=starts[1:])
    desc = col("LP_SET_STATUS_FLAGS.BLOCK_ORDER") != 0
    meter, idx = _ring_positions(keep, count, starts, last, desc, cfg.nbr_blks)
    lasts = np.full(len(meter), g.nint - 1, np.uint32)
    newest = starts[1:][(keep > 0) & (keep == count)] - 1
    lasts[newest] = nvi[(keep > 0) & (keep == count)] - 1
    blocks = idx.astype(np.uint32)
    return _decode_run(g, bt64s, blocks, starts, lasts, cfg, profile, int32)


def _ring_positions(
    take: np.ndarray,
    count: np.ndarray,
    starts: np.ndarray,
    last: np.ndarray,
    desc: np.ndarray,
    size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Positions in circular lists of ``size`` elements (BT63 blocks, BT74
    entries; docs/protocol.md §7.8), one list per image: image i has
    ``count[i]`` valid elements, the newest at ``last[i]``, stored ascending or
    (``desc[i]``) descending; its oldest ``take[i]`` elements come out oldest
    first at ``starts[i]:``.  Returns (image index, position) per element."""
    owner = np.repeat(np.arange(len(take)), take)
    back = count[owner] - 1 - (np.arange(len(owner)) - starts[owner])
    newest = last[owner]
    return owner, np.where(desc[owner], newest + back, newest - back) % max(size, 1)


def _check_each(bad: np.ndarray, field: str, offset: int, msg: str, table: str = "BT63") -> None:
    if bad.any():
        i = int(np.argmax(bad))
        exc = _mal(table, field, offset, f"meter {i}: {msg}")
        exc.meter = i
        raise exc


def _decode_run(
    g: Geometry,
    bt64s: Sequence[Any],
    blocks: np.ndarray,
    starts: np.ndarray,
    lasts: np.ndarray,
    cfg: _Config,
    profile: LoadProfileProfile,
    int32: bool,
) -> LoadProfiles:
    rows = len(blocks) * g.nint
    narrow = int32 and g.fmt_code in (1, 2, 8, 16, 32)
    # every output allocated once and written once by the kernel (dense: nint
    # rows per block); only when some rows are not recorded are the rest copied
    values = np.empty((rows, g.nch), np.int32 if narrow else np.int64)
    status, flags, times, valid = _empty(g, rows)[1:]
    try:
        _kernel.lp_decode_images(
            tuple(g), bt64s, blocks, starts, lasts, values, status, flags, times, valid
        )
    except DecodeError as exc:
        raise _rewrap_block(exc, "BT64", g) from None
    per_block = np.full(len(blocks), g.nint, np.int64)
    if not valid.all():
        per_block = valid.reshape(len(blocks), g.nint).sum(axis=1, dtype=np.int64)
        keep = np.flatnonzero(valid)
        values, status, flags, times = (
            values.take(keep, axis=0),
            status.take(keep, axis=0),
            flags.take(keep),
            times.take(keep),
        )
    ends = np.zeros(len(blocks) + 1, np.int64)
    np.cumsum(per_block, out=ends[1:])
    if g.fmt_code >= 64 and g.ni_format in (0, 1):
        values = values.view(np.float64)
    if not profile.common_flags_high_nibble:
        flags = _NIBBLE_REVERSE[flags]
    return LoadProfiles(
        times.view("datetime64[s]"),
        values,
        status,
        flags,
        ends[starts],
        g,
        cfg.scale,
        _implied(g),
    )


def _implied(g: Any) -> float:
    """The factor of NI_FORMAT 4 interval values: INT32 with 4 implied
    decimals (the BT00 NI_FORMAT enumeration, docs/protocol.md)."""
    return 1e-4 if g.fmt_code >= 64 and g.ni_format == 4 else 1.0


def _decode_each(
    bt61: Any,
    bt62: Any,
    bt63s: Sequence[Any],
    bt64s: Sequence[Any],
    bt00: Any,
    et21: Any,
    set_index: int,
    unread_only: bool,
    profile: LoadProfileProfile,
) -> LoadProfiles:
    """The cases the block kernel leaves to :func:`decode` (FLOAT_CHAR text,
    the alternative block end reading, newest interval first): one call per
    meter, joined."""
    lps = []
    for i, (t63, t64) in enumerate(zip(bt63s, bt64s)):
        try:
            lps.append(
                decode(
                    bt61,
                    bt62,
                    t63,
                    t64,
                    bt00=bt00,
                    et21=et21,
                    set_index=set_index,
                    unread_only=unread_only,
                    profile=profile,
                )
            )
        except DecodeError as exc:
            exc.meter = i
            raise
    cfg = _config(bt00, bt61, bt62, et21, set_index, profile)
    g = cfg.geometry
    offsets = np.zeros(len(lps) + 1, np.int64)
    np.cumsum([len(p) for p in lps], out=offsets[1:])

    def join(f: str, dims: int, dtype: Any) -> np.ndarray:
        if not lps:
            return np.zeros((0, g.nch)[:dims], dtype)
        return np.concatenate([getattr(p, f) for p in lps])

    return LoadProfiles(
        join("timestamps", 1, "datetime64[s]"),
        join("values", 2, np.int64),
        join("status", 2, np.uint8),
        join("flags", 1, np.uint8),
        offsets,
        g,
        cfg.scale,
        _implied(g),
    )


# ---- event log --------------------------------------------------------------------------------


EVENT_DTYPE = np.dtype(
    [
        ("time", "datetime64[s]"),
        ("event_number", "<u2"),
        ("seq", "<u2"),
        ("user_id", "<u2"),
        ("code", "<u2"),
        ("mfg", "?"),
        # bytes objects: numpy's fixed-size S dtype drops trailing zero bytes
        ("argument", object),
    ]
)

#: columns of BT74 (osgp.tables.decode_columns names) behind EVENT_DTYPE's fields
_EVENT_COLUMNS = (
    ("time", "ENTRIES.HISTORY_TIME"),
    ("event_number", "ENTRIES.EVENT_NUMBER"),
    ("seq", "ENTRIES.HISTORY_SEQ_NBR"),
    ("user_id", "ENTRIES.USER_ID"),
    ("code", "ENTRIES.HISTORY_CODE.TBL_PROC_NBR"),
    ("mfg", "ENTRIES.HISTORY_CODE.STD_VS_MFG_FLAG"),
)


def decode_event_logs(
    bt71: Any, bt74s: Sequence[Any], *, bt00: Any = None
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`decode_event_log` of many BT74 images sharing BT71 (and BT00):
    ``(entries, offsets)``, image i's entries being ``entries[offsets[i]:offsets[i+1]]``.
    BT74 is decoded as columns and the circular order computed as arrays; an
    error names the image's index as ``meter``."""
    ctx: dict = {"BT71": bt71}
    if bt00 is not None:
        ctx["BT00"] = bt00
    n_all = _as_table("BT71", bt71, ctx)["NBR_HISTORY_ENTRIES"]
    n = len(bt74s)
    cols = tables.decode_columns(74, bt74s, ctx) if n else {}
    nvalid = cols["NBR_VALID_ENTRIES"].astype(np.int64) if n else np.zeros(0, np.int64)
    last = cols["LAST_ENTRY_ELEMENT"].astype(np.int64) if n else nvalid
    _check_each(nvalid > n_all, "NBR_VALID_ENTRIES", 1, "more entries than BT71 allows", "BT74")
    _check_each(
        (nvalid > 0) & (last >= n_all), "LAST_ENTRY_ELEMENT", 3, "entry outside the list", "BT74"
    )
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(nvalid, out=offsets[1:])
    desc = cols["HIST_FLAGS.ORDER"] if n else np.zeros(0, bool)
    img, at = _ring_positions(nvalid, nvalid, offsets, last, desc, n_all)
    out = np.zeros(len(img), dtype=EVENT_DTYPE)
    out["time"] = np.datetime64("NaT")
    for name, col in _EVENT_COLUMNS:
        if col in cols:
            out[name] = cols[col][img, at]
    arg = cols.get("ENTRIES.HISTORY_ARGUMENT")
    out["argument"] = [bytes(a) for a in arg[img, at]] if arg is not None else b""
    return out, offsets


def check_list_header(
    table: str, head: Any, n_all: int, *, dims: str, valid_at: int, last_at: int
) -> None:
    """Refuse the decoded header of an ANSI C12.19 list table (its first
    fields suffice) whose valid entries or last entry do not fit a list of
    ``n_all`` entries (what dimension table field ``dims`` allows):
    MalformedError naming the field and its byte offset in ``table``
    (NBR_VALID_ENTRIES at ``valid_at``, LAST_ENTRY_ELEMENT at ``last_at``)."""
    nvalid, last = head["NBR_VALID_ENTRIES"], head["LAST_ENTRY_ELEMENT"]
    if nvalid > n_all:
        raise _mal(
            table, "NBR_VALID_ENTRIES", valid_at, f"{nvalid} valid entries, {dims} allows {n_all}"
        )
    if nvalid and last >= n_all:
        raise _mal(table, "LAST_ENTRY_ELEMENT", last_at, f"entry {last} outside the list")


def check_log_header(bt74: Any, n_all: int) -> None:
    """:func:`check_list_header` of BT74 against BT71.NBR_HISTORY_ENTRIES
    (HIST_FLAGS at 0, NBR_VALID_ENTRIES at 1, LAST_ENTRY_ELEMENT at 3;
    Optical guide p.51)."""
    check_list_header("BT74", bt74, n_all, dims="BT71", valid_at=1, last_at=3)


def list_slots(head: Any, n_all: int, order: bool, newest: int) -> List[int]:
    """Ring elements of the ``newest`` most recent entries of a checked list
    header, oldest first.  LAST_ENTRY_ELEMENT is the newest entry; with the
    ORDER bit clear the entries ascend (element N older than N+1), with it
    set they descend (Optical guide p.28, p.51)."""
    last = head["LAST_ENTRY_ELEMENT"]
    step = 1 if order else -1
    return [(last + step * back) % n_all for back in range(newest - 1, -1, -1)]


def decode_event_log(bt71: Any, bt74: Any, *, bt00: Any = None) -> np.ndarray:
    """BT74 history log entries as a numpy structured array in chronological
    order (valid entries only; circular list as BT63, docs/protocol.md §7.8).  Fields:
    time (datetime64[s], NaT without HIST_DATE_TIME), event_number, seq,
    user_id, code, mfg (bool), argument (bytes: all HIST_DATA_LENGTH bytes of the
    entry, trailing zero bytes included, since the argument is fixed-length in
    BT74's layout)."""
    ctx: dict = {"BT71": bt71}
    if bt00 is not None:
        ctx["BT00"] = bt00
    t71 = _as_table("BT71", bt71, ctx)
    t74 = _as_table("BT74", bt74, ctx)
    n_all = t71["NBR_HISTORY_ENTRIES"]
    check_log_header(t74, n_all)
    nvalid = t74["NBR_VALID_ENTRIES"]
    desc = t74["HIST_FLAGS"]["ORDER"]
    out = np.zeros(nvalid, dtype=EVENT_DTYPE)
    entries = t74["ENTRIES"]
    for i, slot in enumerate(list_slots(t74, n_all, desc, nvalid)):
        e = entries[slot]
        t = e.get("HISTORY_TIME")
        dtm = t.to_datetime() if t is not None else None
        out["time"][i] = np.datetime64(int(dtm.timestamp()), "s") if dtm else np.datetime64("NaT")
        out["event_number"][i] = e.get("EVENT_NUMBER", 0)
        out["seq"][i] = e.get("HISTORY_SEQ_NBR", 0)
        out["user_id"][i] = e["USER_ID"]
        out["code"][i] = e["HISTORY_CODE"]["TBL_PROC_NBR"]
        out["mfg"][i] = e["HISTORY_CODE"]["STD_VS_MFG_FLAG"]
        out["argument"][i] = bytes(e.get("HISTORY_ARGUMENT", b""))
    return out
