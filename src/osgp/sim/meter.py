"""A simulated OSGP meter on top of :class:`~osgp.session.DeviceSession`.

    meter = SimMeter("SIM0000001", start=1_767_225_600,
                     links=[(MepDeviceCarrier(), LegacySuite(key, MEP_ENVELOPE))])
    port = meter.ports[0]          # handle-then-poll, like a DeviceSession
    port.receive_data(frame, now)  # advances the meter to ``now`` first
    port.poll_transmit(now)

Virtual time ``now`` is seconds since the simulation started; true UTC is
``start + now``; the meter's own clock drifts from it (``drift_ppm``, from
the seed) and can be set.  Nothing reads a wall clock.

State lives in compact form (register integrals, the load-profile ring as the
BT64 image itself, packed log records); every other table image is encoded
with :func:`osgp.tables.encode` when it is read and kept until the state it
shows changes, so an idle meter costs its state and no images.
"""

from __future__ import annotations

import re
import struct
from collections import Counter
from dataclasses import dataclass
from functools import cached_property, lru_cache, partial
from typing import Any, Callable, Dict, FrozenSet, Iterator, List, Optional, Sequence, Tuple, cast

from osgp import tables
from osgp.errors import ConfigurationError, DecodeError
from osgp.link import lon
from osgp.link.carrier import DeviceCarrier
from osgp.loadprofile import FLAG_CLOCK_BACKWARD, FLAG_CLOCK_FORWARD, FLAG_POWER_FAIL
from osgp.security.suite import SecuritySuite
from osgp.services import procedures as P
from osgp.services.codes import ResponseCode
from osgp.services.messages import PED, PENDING, FullWrite, PartialWrite, Response, ServiceProfile
from osgp.session.device import DeviceSession
from osgp.session.events import Event
from osgp.session.profiles import bundle_for
from osgp.sim import keys as sim_keys
from osgp.sim import layouts as L
from osgp.sim import tariff, walk
from osgp.sim.broadcast import BroadcastListener
from osgp.sim.faults import Dice, Faults
from osgp.sim.firmware import CodeBanks
from osgp.sim.model import LoadModel, MeterClock, civil, seeded, splitmix64
from osgp.tables import TimeDate
from osgp.tables.schema import ni_encode

__all__ = ["SimMeter", "MeterPort", "LoadProfileConfig", "DEMAND_INTERVAL"]

ET = 2048
DEMAND_INTERVAL = 900  # block demand interval, seconds of meter clock (the simulator's own)
_ZERO_TIME = TimeDate(2000, 0, 0, 0, 0, 0)  # all-zero STIME_DATE (TM_FORMAT 2): never set
_INT32S = {n: struct.Struct(f"<{n}i") for n in (1, 2)}  # INT32 per load-profile channel
_LOG_REC = struct.Struct("<IHHHH6s")  # meter time, event number, seq, user, code, argument
_BLK_END = struct.Struct("<5B")  # BLK_END_TIME as STIME_DATE: YY MM DD hh mm
_HIST_ENTRIES, _HIST_ARG, _SELF_READS, _NBR_PENDING = 32, 6, 4, 4
_STORED = [27, 53, 54, ET + 3]  # writable configuration tables: the image is the state
# STIME_DATE with TM_FORMAT 2 holds years 2000 + YY (docs/protocol.md §3.4): the clock stays in
# 2000..2099 (a BP10 / EP16 outside it ends with result 2)
_CLOCK_MIN, _CLOCK_MAX = 946_684_800.0, 4_102_444_800.0
_PATH = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


@dataclass(frozen=True)
class LoadProfileConfig:
    """Load-profile data set 1: ``channels`` (1: active Wh, 2: + reactive
    varh), interval length in minutes (dividing a day), intervals per block,
    blocks in the ring."""

    channels: int = 2
    interval_min: int = 15
    intervals: int = 96
    blocks: int = 4

    def __post_init__(self) -> None:
        if not 1 <= self.channels <= 2 or self.interval_min <= 0 or 1440 % self.interval_min:
            raise ConfigurationError("load profile: 1..2 channels, interval dividing 1440 min")
        if not 1 <= self.intervals <= 255 or not 1 <= self.blocks <= 255:
            raise ConfigurationError("load profile: 1..255 intervals per block and blocks")

    @cached_property  # frozen: computed once per configuration
    def step(self) -> int:
        return 60 * self.interval_min

    # block layout ([OPT p.35-36]): BLK_END_TIME STIME_DATE (5), END_READINGS
    # NI_FMAT1 INT32 per channel, SIMPLE_INT_STATUS bits, then intervals of
    # EXTENDED_INT_STATUS (channels // 2 + 1 nibble bytes) + INT32 per channel
    @cached_property
    def simple_off(self) -> int:
        return 5 + 4 * self.channels

    @cached_property
    def int0(self) -> int:
        return self.simple_off + (self.intervals + 7) // 8

    @cached_property
    def ext(self) -> int:
        return self.channels // 2 + 1

    @cached_property
    def int_size(self) -> int:
        return self.ext + 4 * self.channels

    @cached_property
    def block_size(self) -> int:
        return self.int0 + self.intervals * self.int_size


@lru_cache(maxsize=1024)
def _ymd(day: int) -> Tuple[int, int, int]:
    """UTC (year, month, day) of day ``day`` since the epoch."""
    d = civil(day * 86400)
    return d.year, d.month, d.day


def write_block_end(
    img: bytearray, base: int, at: float, readings: Tuple[int, ...], c: LoadProfileConfig
) -> None:
    """A load-profile block's BLK_END_TIME (STIME_DATE, TM_FORMAT 2 = YY MM DD
    hh mm, docs/protocol.md §3.4) and END_READINGS (INT32 per channel) for
    its interval ending at meter time ``at`` with registers ``readings``."""
    s = int(at // 1)
    year, month, day = _ymd(s // 86400)
    hour, minute = s % 86400 // 3600, s % 3600 // 60
    _BLK_END.pack_into(img, base, year - 2000, month, day, hour, minute)
    _INT32S[c.channels].pack_into(img, base + 5, *readings)


def time_date(epoch: float) -> TimeDate:
    """The C12.19 date and time of an epoch second (UTC calendar fields)."""
    d = civil(epoch)
    return TimeDate(d.year, d.month, d.day, d.hour, d.minute, d.second)


def _epoch(td: Any) -> float:
    return float(TimeDate(*td).epoch())


def _resolve(decoded: Dict[str, Any], ref: str) -> int:
    head, _, path = ref.partition(".")
    v: Any = decoded.get(head)
    try:
        for name, idx in _PATH.findall(path):
            v = v[int(idx)] if idx else v[name]
        return int(v)
    except (KeyError, IndexError, TypeError):
        return 0  # an element the dimension table does not have counts as 0


@lru_cache(maxsize=64)
def _flat_context(tid: int, dims: Tuple[bytes, ...]) -> Dict[str, Any]:
    """The values a layout depends on, resolved once per dimension set and
    shared by every meter that has those dimensions."""
    bt00, bt21, bt61, bt71 = dims
    ctx = {"BT00": bt00}
    decoded = {
        "BT00": tables.decode(0, bt00),
        "BT21": tables.decode(21, bt21, ctx),
        "BT61": tables.decode(61, bt61, ctx),
        "BT71": tables.decode(71, bt71, ctx),
    }
    out: Dict[str, Any] = {"@LP_SETS": 1}
    for ref in tables.program(tid).params:
        if not ref.startswith("@"):
            out[ref] = _resolve(decoded, ref)
    return out


_Sizes = Tuple[Tuple[int, Tuple[int, ...]], ...]  # procedure id -> parameter sizes


@lru_cache(maxsize=8)
def _bt00_image(
    rendered: FrozenSet[int],
    stored: Tuple[int, ...],
    sizes: _Sizes,
) -> bytes:
    """BT00 of the tables rendered and stored and the procedures with their
    parameter sizes: the same for every meter, encoded once."""
    std = {t for t in rendered | set(stored) | {7, 8} if t < 80}
    mfg = {t - ET for t in rendered | set(stored) if t >= ET}
    mfg |= {27, 28, 52, 53}  # transaction tables (DeviceSession)
    procs = {p for p, _ in sizes}
    return tables.encode(
        0,
        {
            "FORMAT_CONTROL_1": {"CHAR_FORMAT": 1},
            "FORMAT_CONTROL_2": {"TM_FORMAT": 2, "ID_FORM": 0},
            "FORMAT_CONTROL_3": {"NI_FORMAT1": 8, "NI_FORMAT2": 8},
            "DEVICE_CLASS": "OSGP",
            "MAX_PROC_PARM_LENGTH": max(max(s) for _, s in sizes),
            "MAX_RESP_DATA_LEN": 4,
            "STD_VERSION_NO": 1,
            "DIM_STD_TBLS_USED": 10,
            "DIM_MFG_TBLS_USED": 8,
            "DIM_STD_PROC_USED": 2,
            "DIM_MFG_PROC_USED": 6,
            "DIM_MFG_STATUS_USED": 1,
            "NBR_PENDING": _NBR_PENDING,
            "STD_TBLS_USED": [t in std for t in range(80)],
            "MFG_TBLS_USED": [t in mfg for t in range(64)],
            "STD_PROC_USED": [p in procs for p in range(16)],
            "MFG_PROC_USED": [p + ET in procs for p in range(48)],
            "STD_TBLS_WRITE": [t in stored for t in range(80)],
            "MFG_TBLS_WRITE": [t + ET in stored for t in range(64)],
        },
    )


@lru_cache(maxsize=1)
def _bt21_image() -> bytes:
    """BT21, the same for every meter: encoded once."""
    return tables.encode(
        21,
        {
            "REG_FUNC1_FLAGS": {
                "DATE_TIME_FIELD_FLAG": True,
                "DEMAND_RESET_CTR_FLAG": True,
                "CUM_DEMAND_FLAG": True,
                "TIME_REMAINING_FLAG": True,
            },
            "REG_FUNC2_FLAGS": {"SELF_READ_SEQ_NBR_FLAG": True, "DAILY_SELF_READ_FLAG": True},
            "NBR_SELF_READS": _SELF_READS,
            "NBR_SUMMATIONS": 2,
            "NBR_DEMANDS": 1,
            "NBR_OCCUR": 1,
            "NBR_TIERS": 2,
            "NBR_PRESENT_DEMANDS": 1,
            "NBR_PRESENT_VALUES": 4,
        },
    )


@lru_cache(maxsize=1)
def _bt71_image() -> bytes:
    """BT71, the same for every meter: encoded once."""
    return tables.encode(
        71,
        {
            "LOG_FLAGS": {
                "EVENT_NUMBER_FLAG": True,
                "HIST_DATE_TIME_FLAG": True,
                "HIST_SEQ_NBR_FLAG": True,
            },
            "NBR_STD_EVENTS": 7,
            "NBR_MFG_EVENTS": 1,
            "HIST_DATA_LENGTH": _HIST_ARG,
            "NBR_HISTORY_ENTRIES": _HIST_ENTRIES,
        },
    )


def _encode_entries(
    tid: int, field: str, count_ref: str, ctx: Dict[str, Any], entries: List[Any], head: int
) -> List[bytes]:
    """Encode some elements of a list table's fixed-size array in one call
    (the table's count `count_ref` set to their number) and split the bytes
    after the `head`-byte header into one part per element."""
    body = tables.encode(tid, {field: entries}, {**ctx, count_ref: len(entries)})[head:]
    size = len(body) // len(entries)
    return [body[k * size : (k + 1) * size] for k in range(len(entries))]


@lru_cache(maxsize=64)
def _bt61_image(lp: LoadProfileConfig, memory_len: int, bt00: bytes) -> bytes:
    """BT61 of a load-profile configuration: shared by the meters that have it."""
    return tables.encode(
        61,
        {
            "LP_MEMORY_LEN": memory_len,
            "LP_FLAGS": {
                "BLK_END_READ_FLAG": True,
                "EXTENDED_INT_STATUS_FLAG": True,
                "SIMPLE_INT_STATUS_FLAG": True,
            },
            "LP_DATA_SETS": [
                {
                    "NBR_BLKS_SET": lp.blocks,
                    "NBR_BLK_INTS_SET": lp.intervals,
                    "NBR_CHNS_SET": lp.channels,
                    "MAX_INT_TIME_SET": lp.interval_min,
                }
            ],
        },
        {"BT00": bt00},
    )


@lru_cache(maxsize=64)
def _bt62_image(channels: int, dims: Tuple[bytes, ...]) -> bytes:
    """BT62 of a channel count and dimension set: shared by the meters that have them."""
    sel = [
        {
            "CHNL_FLAG": {"END_RDG_FLAG": True},
            "LP_SOURCE_SELECT": ch,
            "END_BLK_RDG_SOURCE_SELECT": ch,
        }
        for ch in range(channels)
    ]
    return tables.encode(62, {"LP_SEL_SET1": sel, "INT_FMT_CDE1": 32}, _flat_context(62, dims))


class _Images(dict):
    """Table id -> image.  Rendered tables are re-encoded when read after the
    state they show changed (``SimMeter._refresh``)."""

    __slots__ = ("meter",)
    meter: SimMeter

    def __getitem__(self, k: int) -> bytearray:
        r = _RENDER.get(k)
        if r is not None:
            m = self.meter
            key = r[1](m)
            if m._fresh.get(k) != key:
                m._refresh(k, r[0], key)
        return dict.__getitem__(self, k)

    def __contains__(self, k: object) -> bool:
        return k in _RENDER or dict.__contains__(self, k)


class _SimSession(DeviceSession):
    """A DeviceSession that tells its meter about writes, answers busy when a
    fault says so and refuses pending images of read-only tables."""

    port: MeterPort

    def execute(self, req: Any, profile: ServiceProfile) -> Response:
        try:
            return self._execute(req, profile)
        except Exception as exc:  # the meter's own fault (a render, a procedure handler)
            self.port.errors[type(exc).__name__] += 1
            # answered, so a retry is not met with 0x0C: "table operation not possible" [MEP p.11]
            return Response(ResponseCode.IAR)

    def _execute(self, req: Any, profile: ServiceProfile) -> Response:
        port = self.port
        top = profile is self.services
        if top and port._busy:
            port._busy = False
            return Response(ResponseCode.BSY)
        t = req.table
        is_write = isinstance(req, (FullWrite, PartialWrite))
        if not is_write and t >= PENDING and t not in self.tables:
            return tariff.read_pending(port.meter, req)  # a pending image (osgp.sim.tariff)
        if is_write and (t in _RENDER or t - PENDING in _RENDER):
            return Response(ResponseCode.ISC)  # live tables and their pending images
        r = super().execute(req, profile)
        if is_write and r.code == 0:
            port.meter._written(port, t)
        return r


class _FaultySuite:
    """Wraps a suite: a sealed response may get its last byte (the end of the
    digest or tag) flipped, by the port's dice."""

    def __init__(self, suite: SecuritySuite, port: MeterPort) -> None:
        self._suite, self._port = suite, port

    def __getattr__(self, name: str) -> Any:
        return getattr(self._suite, name)

    def seal_response(self, ctx: Any, apdu: bytes) -> bytes:
        wire = self._suite.seal_response(ctx, apdu)
        dice = self._port.dice
        if wire and dice is not None and dice.roll(dice.faults.wrong_digest):
            self._port._inject("wrong digest")
            wire = wire[:-1] + bytes([wire[-1] ^ 0x5A])
        return wire


class MeterPort:
    """One link of a meter, driven like a device session (handle, then poll).
    ``receive_data`` advances the meter to ``now`` before serving; frames the
    faults hold back come out of ``poll_transmit`` once their time is due."""

    def __init__(
        self,
        meter: SimMeter,
        index: int,
        carrier: DeviceCarrier,
        suite: Optional[SecuritySuite],
        seq: int,
    ) -> None:
        self.meter, self.index, self.carrier = meter, index, carrier
        self.suite = suite
        self.link = carrier.link
        self.drops: Counter = Counter()
        self.injected: Counter = Counter()
        self.errors: Counter = Counter()  # requests answered 0x05 after an internal fault
        self.faulted: List[Tuple[int, str]] = []  # (frame number, fault) as injected
        self._frames = 0
        f = meter.faults
        self.dice: Optional[Dice] = Dice(f, meter.seed, index) if f.frames else None
        self._busy = False
        self._held: List[Tuple[float, int, bytes]] = []
        self._order = 0
        self.session = self._session(None, seq)

    def _session(self, state: Optional[Dict[str, Any]], seq: int = 0) -> _SimSession:
        m, suite = self.meter, self.suite
        wrapped: Any = suite
        if suite is not None and m.faults.wrong_digest > 0:
            wrapped = _FaultySuite(suite, self)
        s = _SimSession(
            self.carrier,
            wrapped,
            profile=bundle_for(self.carrier, suite),
            tables=m.tables,
            # the session only looks handlers up with .get(proc id)
            procedures=cast(Dict[int, Any], m.procedures),
            seq=seq,
            groups=tuple(m.groups),
            state=state,
        )
        s.port = self
        return s

    def rekey(self, suite: SecuritySuite) -> None:
        """Serve with ``suite`` from now on (a new key), the sequence window kept."""
        self.suite = suite
        self.session = self._session(self.session.state())

    def restart(self) -> None:
        """What a reboot does to the link: the procedure in progress, the
        last PSN, held frames and the transaction duplicate memory are gone;
        the sequence window and the suite's context are kept (they are
        non-volatile: ET04 SEQUENCE_NUMBER / MEP_SEQ_NBR)."""
        state = self.session.state()
        state["psn"] = None
        self._held.clear()
        self.session = self._session(state)

    # -- handle, then poll
    def receive_data(self, data: bytes, now: Optional[float] = None) -> List[Event]:
        m = self.meter
        if now is None:
            now = m.now
        else:
            m.advance(now)
        if not m.powered:
            self.drops["powered off"] += 1
            return []
        if self.link == "plc" and m.broadcasts.receive(self, data, now):
            return []  # a group broadcast: never answered
        dice = self.dice
        if dice is None:
            return self.session.receive_data(data, now)
        f = dice.faults
        self._frames += 1
        if dice.roll(f.drop):
            self._inject("drop")
            return []
        if dice.roll(f.busy):
            self._inject("busy")
            self._busy = True
        events = self.session.receive_data(data, now)
        self._busy = False
        out = self.session.poll_transmit(now)
        while out is not None:
            self._fault_out(out, now, dice)
            out = self.session.poll_transmit(now)
        return events

    def _inject(self, kind: str) -> None:
        self.injected[kind] += 1
        self.faulted.append((self._frames, kind))

    def _fault_out(self, frame: bytes, now: float, dice: Dice) -> None:
        f = dice.faults
        if dice.roll(f.corrupt):
            self._inject("corrupt")
            i = len(frame) // 2 + dice.index(max(1, len(frame) - len(frame) // 2))
            frame = frame[:i] + bytes([frame[i] ^ 0x01]) + frame[i + 1 :]
        at = now
        if dice.roll(f.delay):
            self._inject("delay")
            at = now + f.delay_s
        copies = 2 if dice.roll(f.duplicate) else 1
        if copies == 2:
            self._inject("duplicate")
        for _ in range(copies):
            self._order += 1
            self._held.append((at, self._order, frame))

    def poll_transmit(self, now: float = 0.0) -> Optional[bytes]:
        if self.dice is None:
            return self.session.poll_transmit(now)
        due = [h for h in self._held if h[0] <= now]
        if not due:
            return None
        first = min(due)
        self._held.remove(first)
        return first[2]

    def next_deadline(self) -> Optional[float]:
        """When a held-back frame is due (the meter's own events are in
        :meth:`SimMeter.next_deadline`)."""
        return min(h[0] for h in self._held) if self._held else None

    def handle_timeout(self, now: float) -> List[Event]:
        self.meter.advance(now)
        return []


class SimMeter:
    """A complete simulated OSGP device (see the module docstring).

    ``serial``: BT01/BT05 identification; ``seed``: load model, clock drift
    and fault dice (default: derived from the serial); ``start``: true UTC
    epoch second at virtual time 0 (the meter clock starts there too);
    ``links``: ``(device carrier, suite or None)`` per port; ``seq``: the
    initial sequence number of every port; ``faults``: :class:`Faults`."""

    __slots__ = (
        "_base",
        "_bt23_tpl",
        "banks",
        "broadcasts",
        "_bt25",
        "_contactor",
        "_cum",
        "_dims_cache",
        "_dmd_j0",
        "_dmd_next",
        "_dmd_start",
        "_due",
        "_e_memo",
        "_f_base",
        "_flowing",
        "_fresh",
        "_gen",
        "_jumps",
        "_last_activation",
        "_log",
        "_log_dirty",
        "_log_enc",
        "_log_last",
        "_log_overflow",
        "_log_seq",
        "_log_unread",
        "_log_valid",
        "_lp_flags",
        "_lp_img",
        "_lp_last",
        "_lp_new_block",
        "_lp_next",
        "_lp_nvi",
        "_lp_overflow",
        "_lp_prev",
        "_lp_seq",
        "_lp_unread",
        "_lp_valid",
        "_max",
        "_max_t",
        "_pending",
        "_sr",
        "_sr_enc",
        "_sr_last",
        "_sr_next",
        "_sr_seq",
        "_sr_unread",
        "_sr_valid",
        "_stamp",
        "_regs_key",
        "clock",
        "clock_error",
        "closed",
        "contactor_s",
        "demand_resets",
        "drift_ppm",
        "ext",
        "faults",
        "groups",
        "lp",
        "lp_enabled",
        "model",
        "now",
        "ports",
        "powered",
        "procedures",
        "seed",
        "serial",
        "start",
        "tables",
        "tamper_flag",
    )

    def __init__(
        self,
        serial: str,
        *,
        seed: Optional[int] = None,
        start: float = 1_767_225_600.0,  # 2026-01-01T00:00:00Z
        links: Sequence[Tuple[DeviceCarrier, Optional[SecuritySuite]]] = (),
        seq: int = 0,
        lp: LoadProfileConfig = LoadProfileConfig(),
        faults: Optional[Faults] = None,
        groups: Sequence[int] = (),
        contactor_s: float = 1.0,
    ) -> None:
        if not serial or len(serial) > 16:
            raise ConfigurationError("serial: 1..16 characters (BT01 MFG_SERIAL_NUMBER)")
        self.serial = serial
        self.seed = seed if seed is not None else splitmix64(int.from_bytes(serial.encode(), "big"))
        self.start = float(start)
        self.faults = faults if faults is not None else Faults()
        self.drift_ppm = seeded(self.seed)[2]
        self.model = LoadModel(self.seed, self.start)
        self.clock = MeterClock(self.start, self.drift_ppm)
        self.contactor_s = contactor_s
        self.now = 0.0
        self._stamp = 0  # bumps on every change of state (not of time alone)
        self._regs_key: Tuple[Any, Any] = (None, None)  # (now, state) -> BT23 key
        self._gen = 0  # bumps when the configuration (dimension tables) changes
        self.powered = True
        self.closed = True  # contactor
        self.tamper_flag = False
        self.clock_error = False
        self.groups: List[int] = list(groups)
        self.lp = lp
        self.lp_enabled = True
        self.tables = _Images()
        self.tables.meter = self
        self._fresh: Dict[int, Any] = {}
        self._dims_cache: Optional[Tuple[int, Tuple[bytes, ...]]] = None
        self._bt23_tpl: Optional[Tuple[Any, bytearray, int, Tuple[int, ...]]] = None
        self._jumps = list(self.faults.clock_jumps)
        self._pending: Dict[int, Tuple[PED, int, bytes, Optional[float]]] = {}
        self._last_activation = 0.0
        self._contactor: Optional[Tuple[bool, float]] = None
        # energy: E(t) = base + F(t) - F(t_base) while current flows (model.py)
        self._base: Tuple[float, ...] = (0.0,) * 6
        self._f_base = self.model.cumulative(self.start)
        self._flowing = True
        self._e_memo: Optional[Tuple[float, Tuple[float, ...]]] = None  # (now, _energy())
        # demand (per block: total, tier 1, tier 2)
        m0 = self.clock.meter(0.0)
        self._dmd_next = (m0 // DEMAND_INTERVAL + 1) * DEMAND_INTERVAL
        self._dmd_start = self._wh_active()
        self._dmd_j0 = self._base[0]
        self._max = [0, 0, 0]
        self._max_t: List[float] = [0.0, 0.0, 0.0]
        self._cum = [0, 0, 0]
        self.demand_resets = 0
        self._bt25: Optional[Tuple[float, bytes]] = None
        # self reads (BT26 ring)
        self._sr: List[Optional[Tuple[int, float, bytes]]] = [None] * _SELF_READS
        self._sr_last, self._sr_valid, self._sr_unread, self._sr_seq = 0, 0, 0, -1
        self._sr_next = (m0 // 86400 + 1) * 86400
        # BT26's encoded entries: (context, the ring entry each slot was encoded from, its bytes)
        self._sr_enc: Optional[Tuple[Dict[str, Any], List[Any], List[bytes]]] = None
        # history log (BT74 ring of packed records)
        self._log = bytearray(_LOG_REC.size * _HIST_ENTRIES)
        self._log_last, self._log_valid, self._log_unread, self._log_seq = 0, 0, 0, -1
        self._log_overflow = False
        # BT74's ENTRIES as encoded when last read, and the ring slots written since
        self._log_enc: Optional[Tuple[Dict[str, Any], List[bytes]]] = None
        self._log_dirty = 0
        # load profile (ring state: _lp_setup)
        self._lp_flags = 0  # common flags for the interval running now
        self._lp_next = 0.0  # meter time of the next interval end
        self._lp_setup(m0)
        self._due = 0.0
        self.banks = CodeBanks(self)  # firmware code banks (osgp.sim.firmware)
        self.broadcasts = BroadcastListener(self)  # secure group broadcasts (osgp.sim.broadcast)
        self._init_tables()
        self.ext = {name: make(self) for name, make in _EXTENSIONS.items()}
        self.procedures = _Procedures(self)
        self.ports = [MeterPort(self, i, c, s, seq) for i, (c, s) in enumerate(links)]
        self._apply_groups()
        self._schedule()

    # ---- public ------------------------------------------------------------------------------
    def port(self, link: str) -> MeterPort:
        """The first port on ``link`` ("mep", "optical", "plc")."""
        for p in self.ports:
            if p.link == link:
                return p
        raise ConfigurationError(f"meter {self.serial} has no {link} port")

    def meter_time(self, now: Optional[float] = None) -> float:
        """The meter clock (UTC epoch seconds) at virtual time ``now``."""
        return self.clock.meter(self.now if now is None else now)

    def registers(self) -> Dict[str, int]:
        """Register values now, in Wh / varh: total and per tier."""
        wh = [int(e // 3600) for e in self._energy()]
        return {
            "active": wh[0],
            "reactive": wh[1],
            "active_t1": wh[2],
            "active_t2": wh[3],
            "reactive_t1": wh[4],
            "reactive_t2": wh[5],
        }

    def image(self, tid: int) -> bytes:
        """The current image of table ``tid`` (what a full read returns)."""
        return bytes(self.tables[tid])

    def next_deadline(self) -> float:
        """Virtual time of the meter's next own event (interval end, demand
        end, self read, pending activation, contactor, clock jump)."""
        return self._due

    def advance(self, now: float) -> None:
        """Run the meter up to virtual time ``now`` (never backwards)."""
        if now <= self.now:
            return
        if self._due <= now and not self._irregular():
            self._advance_regular(now)
        while self._due <= now:
            self.now = max(self.now, self._due)
            self._fire()
            self._schedule()
        self.now = now

    def power_fail(self, now: float) -> None:
        self.advance(now)
        if not self.powered:
            return
        self._log_event("power down")
        self._set_flow(powered=False)
        self._lp_flags |= FLAG_POWER_FAIL

    def power_restore(self, now: float) -> None:
        self.advance(now)
        if self.powered:
            return
        self._set_flow(powered=True)
        self._lp_flags |= FLAG_POWER_FAIL
        self._log_event("power up")
        for p in self.ports:
            p.restart()

    def reboot(self, now: float) -> None:
        """A power cycle: logs power down / power up; registers, load profile,
        logs, pending tables, groups, the clock and the sequence windows are
        non-volatile; procedure state and link buffers are not
        (:meth:`MeterPort.restart`)."""
        self.power_fail(now)
        self.power_restore(now)

    def tamper(self, now: float) -> None:
        """A tamper attempt: logged, BT03 TAMPER_DETECT latched."""
        self.advance(now)
        self.tamper_flag = True
        self._log_event("tamper attempt")
        self._changed()

    def set_clock(self, now: float, meter_epoch: float) -> None:
        """Set the meter clock (what BP10 does)."""
        self.advance(now)
        old = self.clock.meter(now)
        self._log_event("time changed (old time)", struct.pack("<I", int(old)))
        self._move_clock(meter_epoch)
        self.clock_error = False
        self._log_event("time changed (new time)", struct.pack("<I", int(meter_epoch)))

    # ---- energy ------------------------------------------------------------------------------
    def _energy(self) -> Tuple[float, ...]:
        if not self._flowing:
            return self._base
        memo = self._e_memo
        if memo is not None and memo[0] == self.now:
            return memo[1]
        f = self.model.cumulative(self.start + self.now)
        e = tuple([b + x - y for b, x, y in zip(self._base, f, self._f_base)])
        self._e_memo = (self.now, e)
        return e

    def _wh_active(self) -> Tuple[int, int, int]:
        e = self._energy()
        return int(e[0] // 3600), int(e[2] // 3600), int(e[3] // 3600)

    def _set_flow(self, *, powered: Optional[bool] = None, closed: Optional[bool] = None) -> None:
        self._base = self._energy()
        self._f_base = self.model.cumulative(self.start + self.now)
        if powered is not None:
            self.powered = powered
        if closed is not None:
            self.closed = closed
        self._flowing = self.powered and self.closed
        self._e_memo = None
        self._changed()

    def _power_now(self) -> Tuple[int, int]:
        if not self._flowing:
            return 0, 0
        return self.model.slot_power(int((self.start + self.now) // 900))

    # ---- scheduling --------------------------------------------------------------------------
    def _events(self) -> List[Tuple[float, int, str]]:
        v = self.clock.virtual
        ev = [
            (v(self._lp_next), 0, "lp"),
            (v(self._dmd_next), 1, "demand"),
            (v(self._sr_next), 2, "self read"),
        ]
        for at in (x[3] for x in self._pending.values() if x[3] is not None):
            ev.append((v(at), 3, "pending"))
        if self._contactor is not None:
            ev.append((self._contactor[1], 4, "contactor"))
        if self._jumps:
            ev.append((self._jumps[0][0], 5, "jump"))
        for name, x in self.ext.items():
            at = x.due()
            if at is not None:
                ev.append((at, 6, name))
        if self.banks.due() is not None:
            ev.append((v(cast(float, self.banks.due())), 6, "switch"))
        return ev

    def _schedule(self) -> None:
        self._due = min(self._events())[0]

    def _irregular(self) -> bool:
        """Whether an event other than the interval, demand and self-read
        ends is scheduled (none of those three can schedule one)."""
        return (
            bool(self._jumps)
            or self._contactor is not None
            or any(x[3] is not None for x in self._pending.values())
            or self.banks.due() is not None
            or any(x.due() is not None for x in self.ext.values())
        )

    def _advance_regular(self, now: float) -> None:
        """What :meth:`advance` does while only interval, demand and self-read
        ends fall due: the same events in the same order (by time, then the
        order of :meth:`_events`), without rebuilding the event list; a span
        of many ends in one NumPy pass (:mod:`osgp.sim.walk`, whose fixed
        cost a few ends one by one do not repay)."""
        v = self.clock.virtual
        if (self.clock.meter(now) - self._lp_next) // self.lp.step >= walk.SPAN_ENDS:
            walk.advance_regular(self, now, DEMAND_INTERVAL, FLAG_POWER_FAIL)
        else:
            lp, dmd, sr = v(self._lp_next), v(self._dmd_next), v(self._sr_next)
            t = min(lp, dmd, sr)
            while t <= now:
                if t > self.now:
                    self.now = t
                if lp == t:
                    self._lp_close(self._lp_next)
                    lp = v(self._lp_next)
                elif dmd == t:
                    self._demand_close(self._dmd_next)
                    dmd = v(self._dmd_next)
                else:
                    self._self_read(self._sr_next)
                    self._sr_next += 86400
                    sr = v(self._sr_next)
                t = min(lp, dmd, sr)
        self._schedule()

    def _fire(self) -> None:
        _, _, kind = min(self._events())
        m = self.clock.meter(self.now)
        if kind == "lp":
            self._lp_close(self._lp_next)
        elif kind == "demand":
            self._demand_close(self._dmd_next)
        elif kind == "self read":
            self._self_read(self._sr_next)
            self._sr_next += 86400
        elif kind == "pending":
            due = sorted((at, t) for t, (_, _, _, at) in self._pending.items() if at is not None)
            for at, t in due:
                if at <= m + 1e-3 or t == due[0][1]:  # the earliest is due by construction
                    self._activate(t)
        elif kind == "contactor":
            self._move_contactor()
        elif kind in self.ext:
            self.ext[kind].fire()
        elif kind == "switch":
            self.banks.fire()
        else:
            _, delta = self._jumps.pop(0)
            self._log_event("clock error", struct.pack("<I", int(m)))
            self._move_clock(m + delta)
            self.clock_error = True

    def _changed(self) -> None:
        self._stamp += 1

    # ---- clock -------------------------------------------------------------------------------
    def _move_clock(self, new: float) -> None:
        old = self.clock.meter(self.now)
        self.clock.set(self.now, new)
        step = self.lp.step
        if new > old:
            self._lp_flags |= FLAG_CLOCK_FORWARD
            if new - self._lp_next > self.lp.blocks * self.lp.intervals * step:
                # further than the whole ring: close this interval, restart at the new time
                self._lp_close(self._lp_next)
                self._lp_next = (new // step + 1) * step
                self._lp_new_block = True
        else:
            self._lp_flags |= FLAG_CLOCK_BACKWARD
            if self._lp_next - new > step:  # the interval would run backwards in its block
                self._lp_next = (new // step + 1) * step
                self._lp_new_block = True
        self._dmd_next = (new // DEMAND_INTERVAL + 1) * DEMAND_INTERVAL
        self._dmd_start = self._wh_active()
        self._dmd_j0 = self._energy()[0]
        self._sr_next = (new // 86400 + 1) * 86400
        self._changed()
        self._schedule()

    # ---- demand ------------------------------------------------------------------------------
    def _demand_close(self, at: float) -> None:
        e = self._energy()
        wh = int(e[0] // 3600), int(e[2] // 3600), int(e[3] // 3600)  # _wh_active()
        for i in range(3):
            d = (wh[i] - self._dmd_start[i]) * 3600 // DEMAND_INTERVAL
            if d > self._max[i]:
                self._max[i], self._max_t[i] = d, at
        self._dmd_start = wh
        self._dmd_j0 = e[0]
        self._dmd_next = at + DEMAND_INTERVAL
        self._stamp += 1  # _changed()

    def demand_reset(self) -> None:
        """EP34: keep the registers in BT25, fold the maxima into the
        cumulative demands, count the reset."""
        self._bt25 = (self.clock.meter(self.now), self._bt23())
        for i in range(3):
            self._cum[i] += self._max[i]
            self._max[i], self._max_t[i] = 0, 0.0
        self.demand_resets = (self.demand_resets + 1) & 0xFF
        self._log_event("demand reset")
        self._changed()

    # ---- self reads --------------------------------------------------------------------------
    def _self_read(self, at: float) -> int:
        if self._sr_valid:
            self._sr_last = (self._sr_last + 1) % _SELF_READS
        self._sr_valid = min(self._sr_valid + 1, _SELF_READS)
        self._sr_unread = min(self._sr_unread + 1, _SELF_READS)
        self._sr_seq = (self._sr_seq + 1) & 0xFFFF
        self._sr[self._sr_last] = (self._sr_seq, at, self._bt23())
        self._log_event("self read")
        self._changed()
        return self._sr_seq

    # ---- load profile ------------------------------------------------------------------------
    def _lp_setup(self, m: float) -> None:
        c = self.lp
        self._lp_img = bytearray(c.blocks * c.block_size)
        self._lp_last, self._lp_valid, self._lp_unread, self._lp_nvi = 0, 0, 0, 0
        self._lp_seq = -1
        self._lp_overflow = False
        self._lp_new_block = False
        self._lp_flags = 0
        self._lp_next = (m // c.step + 1) * c.step
        self._lp_prev = self._lp_readings()

    def _lp_readings(self) -> Tuple[int, ...]:
        e = self._energy()
        return tuple([int(x // 3600) for x in e[: self.lp.channels]])

    def _lp_close(self, at: float) -> None:
        c = self.lp
        e = self._energy()
        readings = tuple([int(x // 3600) for x in e[: c.channels]])  # _lp_readings()
        deltas = [r - p for r, p in zip(readings, self._lp_prev)]
        ints = _INT32S[c.channels]
        self._lp_prev = readings
        self._lp_next = at + c.step
        flags = self._lp_flags | (0 if self.powered else FLAG_POWER_FAIL)
        self._lp_flags = 0
        if not self.lp_enabled:
            return
        if self._lp_valid == 0 or self._lp_nvi == c.intervals or self._lp_new_block:
            self._lp_open_block()
        img, base, i = self._lp_img, self._lp_last * c.block_size, self._lp_nvi
        write_block_end(img, base, at, readings, c)
        img[base + c.simple_off + i // 8] |= 1 << (i % 8)  # SIMPLE_INT_STATUS bit i
        ip = base + c.int0 + i * c.int_size
        img[ip] = flags << 4  # common flags in the high nibble, channel 0 status low
        ints.pack_into(img, ip + c.ext, *deltas)
        self._lp_nvi = i + 1
        self._stamp += 1  # _changed()

    def _lp_open_block(self) -> None:
        c = self.lp
        if self._lp_valid:
            self._lp_last = (self._lp_last + 1) % c.blocks
        if self._lp_valid == c.blocks:
            self._lp_overflow = True  # the oldest block is overwritten
        self._lp_valid = min(self._lp_valid + 1, c.blocks)
        self._lp_unread = min(self._lp_unread + 1, c.blocks)
        self._lp_seq = (self._lp_seq + 1) & 0xFFFFFFFF
        base = self._lp_last * c.block_size
        self._lp_img[base : base + c.block_size] = bytes(c.block_size)
        self._lp_nvi = 0
        self._lp_new_block = False

    def lp_reset(self) -> None:
        """EP11 reset: the data set's blocks are cleared; the block sequence
        number carries on so a collector never sees one reused."""
        seq = self._lp_seq
        self._lp_setup(self.clock.meter(self.now))
        self._lp_seq = seq
        self._log_event("load profile reset", mfg=True)
        self._changed()

    # ---- events log --------------------------------------------------------------------------
    def _log_event(self, name: str, arg: bytes = b"", *, mfg: bool = False, user: int = 0) -> None:
        code = (L.MFG_EVENTS[name] | 0x800) if mfg else L.EVENTS[name]
        if self._log_valid:
            self._log_last = (self._log_last + 1) % _HIST_ENTRIES
        if self._log_valid == _HIST_ENTRIES:
            self._log_overflow = True
        self._log_valid = min(self._log_valid + 1, _HIST_ENTRIES)
        self._log_unread = min(self._log_unread + 1, _HIST_ENTRIES)
        self._log_seq = (self._log_seq + 1) & 0xFFFFFFFF
        _LOG_REC.pack_into(
            self._log,
            self._log_last * _LOG_REC.size,
            int(self.clock.meter(self.now)),
            self._log_seq & 0xFFFF,
            self._log_seq & 0xFFFF,
            user,
            code,
            arg[:_HIST_ARG].ljust(_HIST_ARG, b"\0"),
        )
        self._log_dirty |= 1 << self._log_last
        self._changed()

    def history(self) -> List[Tuple[float, int, bool, bytes]]:
        """The log, oldest first: (meter time, code, manufacturer, argument)."""
        out = []
        for k in range(self._log_valid - 1, -1, -1):
            i = (self._log_last - k) % _HIST_ENTRIES
            t, _, _, _, code, arg = _LOG_REC.unpack_from(self._log, i * _LOG_REC.size)
            out.append((float(t), code & 0x7FF, bool(code & 0x800), arg))
        return out

    # ---- writes and pending tables -----------------------------------------------------------
    def _written(self, port: MeterPort, t: int) -> None:
        if t >= PENDING:
            s = port.session
            ped, off, data = s.pending.pop(t - PENDING)
            old, active = self._pending.get(t - PENDING), dict.__getitem__(self.tables, t - PENDING)
            ped, off, data = tariff.merge_pending(old, ped, off, data, active)
            self._pending[t - PENDING] = (ped, off, data, self._activation_time(ped))
            self._changed()
            self._schedule()
        elif t in _STORED:
            self._log_event("table written", struct.pack("<HB", t, 0), user=port.index + 1)
        for x in self.ext.values():
            x.written(t)

    def _activation_time(self, ped: PED) -> Optional[float]:
        s = ped.storage
        if ped.event_code == 0:  # absolute STIME_DATE, UTC (Optical guide p.9-10)
            try:
                return _epoch((2000 + s[0], s[1], s[2], s[3], s[4], 0))
            except (ValueError, OverflowError):
                return None
        if ped.event_code == 1:  # relative: weeks, days, hours, minutes, seconds
            w, d, h, mi, sec = s
            return self.clock.meter(self.now) + (((w * 7 + d) * 24 + h) * 60 + mi) * 60 + sec
        return None  # activated by BP12 / BP13 only

    def _activate(self, t: int) -> None:
        ped, off, data, _ = self._pending.pop(t)
        if ped.self_read:
            self._self_read(self.clock.meter(self.now))
        if ped.demand_reset:
            self.demand_reset()
        img = dict.__getitem__(self.tables, t)
        ok = off + len(data) <= len(img)
        if ok:
            img[off : off + len(data)] = data
        self._last_activation = self.clock.meter(self.now)
        self._log_event("pending table activation", struct.pack("<HB", t, 0 if ok else 2))
        self._changed()

    def _clear_pending(self, t: int) -> None:
        del self._pending[t]
        self._log_event("pending table clear", struct.pack("<H", t))

    # ---- contactor and groups ----------------------------------------------------------------
    def _move_contactor(self) -> None:
        if self._contactor is None:
            return
        closed, _ = self._contactor
        self._contactor = None
        if closed != self.closed:
            self._set_flow(closed=closed)
            self._log_event("contactor closed" if closed else "contactor opened", mfg=True)
        self._schedule()

    def _apply_groups(self) -> None:
        g = tuple(self.groups)
        for p in self.ports:
            p.session.groups = g
            if hasattr(p.carrier, "groups"):
                p.carrier.groups = g  # PLC group addresses
        self._changed()

    # ---- procedures --------------------------------------------------------------------------
    def _call(self, pid: int, params: bytes) -> Any:
        """Run procedure ``pid``: check the parameter length, log it, apply
        the slow-procedure fault."""
        if len(params) not in L.PARAMETER_SIZES[pid]:
            result: Any = (2, b"")
        else:
            result = _HANDLERS[pid](self, params)
        code = result[0] if isinstance(result, tuple) else P.RESULT_ACCEPTED
        self._log_event("procedure invoked", struct.pack("<HB", pid, code))
        slow = self.faults.slow_polls
        return _slow(slow, result) if slow else result

    def _bp12(self, p: bytes) -> Tuple[int, bytes]:
        return self._bp12_15(True, None)

    def _bp13(self, p: bytes) -> Tuple[int, bytes]:
        return self._bp12_15(True, int.from_bytes(p, "little"))

    def _bp14(self, p: bytes) -> Tuple[int, bytes]:
        return self._bp12_15(False, None)

    def _bp15(self, p: bytes) -> Tuple[int, bytes]:
        return self._bp12_15(False, int.from_bytes(p, "little"))

    def _ep12(self, p: bytes) -> Tuple[int, bytes]:
        return 0, struct.pack("<H", self._self_read(self.clock.meter(self.now)))

    def _bp05(self, p: bytes) -> Tuple[int, bytes]:
        lst, n = struct.unpack("<BH", p)
        if lst == L.LIST_HISTORY:
            self._log_unread -= min(n, self._log_unread)
        elif lst == L.LIST_SELF_READS:
            self._sr_unread -= min(n, self._sr_unread)
        elif lst == L.LIST_LP_SET1:
            self._lp_unread -= min(n, self._lp_unread)
        else:
            return 2, b""
        self._log_event("updated list pointers", struct.pack("<HB", lst, 0))
        return 0, b""

    def _bp10(self, p: bytes) -> Tuple[int, bytes]:
        mask = p[0]
        try:
            new = tables.decode(52, p[1:8])["CLOCK_CALENDAR"]
        except DecodeError:
            return 2, b""
        old = time_date(self.clock.meter(self.now))
        date = new[:3] if mask & L.SET_DATE else old[:3]
        tod = new[3:] if mask & L.SET_TIME else old[3:]
        try:
            civil_new = TimeDate(*date, *tod)
            if civil_new.to_datetime() is None:
                return 2, b""
        except (ValueError, TypeError):
            return 2, b""
        frac = self.clock.meter(self.now) % 1.0 if not mask & L.SET_TIME else 0.0
        new = _epoch(civil_new) + frac
        if not _CLOCK_MIN <= new < _CLOCK_MAX:
            return 2, b""
        self.set_clock(self.now, new)
        return 0, b""

    def _ep16(self, p: bytes) -> Tuple[int, bytes]:
        (delta,) = struct.unpack("<i", p)
        new = self.clock.meter(self.now) + delta
        if not _CLOCK_MIN <= new < _CLOCK_MAX:
            return 2, b""
        self.set_clock(self.now, new)
        return 0, b""

    def _bp12_15(self, activate: bool, table: Optional[int]) -> Tuple[int, bytes]:
        targets = list(self._pending) if table is None else [table]
        if table is not None and table not in self._pending:
            return 3, b""
        for t in targets:
            self._activate(t) if activate else self._clear_pending(t)
        self._schedule()
        return 0, b""

    def _ep11(self, p: bytes) -> Tuple[int, bytes]:
        dataset, action = p[0], p[1]
        if dataset != 0 or action > 3 or (action == 1) != (len(p) == 4):
            return 2, b""
        if action == 1:
            try:
                cfg = LoadProfileConfig(p[3], p[2], self.lp.intervals, self.lp.blocks)
            except ConfigurationError:
                return 2, b""
            self.lp = cfg
            self._gen += 1
        if action in (0, 1):
            self.lp_reset()
        else:
            self.lp_enabled = action == 3
            self._gen += 1
        self._changed()
        self._schedule()
        return 0, b""

    def _ep23(self, p: bytes) -> Any:
        if p[0] > 1:
            return 2, b""
        self._contactor = (p[0] == 1, self.now + self.contactor_s)
        self._schedule()

        def steps() -> Iterator[Tuple[int, bytes]]:
            yield P.RESULT_ACCEPTED, b""  # the contactor starts moving
            if self._contactor is not None:
                yield P.RESULT_ACCEPTED, b""  # still moving at the first BT08 poll
            self._move_contactor()  # done by the second poll at the latest
            yield 0, bytes([1 if self.closed else 0])

        return steps()

    def _ep27(self, p: bytes) -> Tuple[int, bytes]:
        action = p[0]
        if action == 2 and len(p) == 1:
            self.groups.clear()
        elif action in (0, 1) and len(p) == 3:
            g = int.from_bytes(p[1:3], "little")
            if g == 0 or g == 0xFFFF:
                return 2, b""
            if action == 0 and g not in self.groups:
                if len(self.groups) >= L.MAX_GROUPS:
                    return 3, b""
                self.groups.append(g)
                self._log_event("group added", struct.pack("<H", g), mfg=True)
            elif action == 1 and g in self.groups:
                self.groups.remove(g)
                self._log_event("group removed", struct.pack("<H", g), mfg=True)
        else:
            return 2, b""
        self._apply_groups()
        return 0, bytes([len(self.groups)])

    def _ep34(self, p: bytes) -> Tuple[int, bytes]:
        self.demand_reset()
        return 0, bytes([self.demand_resets])

    # ---- table images ------------------------------------------------------------------------
    def _init_tables(self) -> None:
        # transaction response tables grow with the response they hold (the
        # sessions would otherwise allocate 1785 bytes each, MEP p.43-50)
        for t in (ET + 28, ET + 53):
            dict.__setitem__(self.tables, t, bytearray())
        dict.__setitem__(
            self.tables,
            27,
            # the demand of forward active Wh; forward and reverse active W, import
            # and export var (source IDs 0 and 8..11, MEP guide p.203-204)
            bytearray(
                tables.encode(
                    27,
                    {"PRESENT_DEMAND_SELECT": [0], "PRESENT_VALUE_SELECT": [8, 9, 10, 11]},
                    self._ctx(27),
                )
            ),
        )
        dict.__setitem__(
            self.tables,
            53,
            bytearray(
                tables.encode(53, {"DST_TIME_EFF": TimeDate(0, 0, 0, 2, 0, 0), "DST_TIME_AMT": 60})
            ),
        )
        dict.__setitem__(self.tables, 54, bytearray(tariff.factory_bt54()))
        dict.__setitem__(
            self.tables,
            ET + 3,
            bytearray(tables.encode(ET + 3, {"UTILITY_SERIAL_NUMBER": self.serial.ljust(30)})),
        )

    def _refresh(self, k: int, render: Callable[[SimMeter], Any], key: Any) -> None:
        img = render(self)
        dict.__setitem__(self.tables, k, img if isinstance(img, bytearray) else bytearray(img))
        self._fresh[k] = key

    # what a rendered image depends on (_RENDER): equal keys, equal images
    def _key_config(self) -> Any:
        return self._gen

    def _key_state(self) -> Any:
        return self._stamp

    def _key_second(self) -> Any:
        return int(self.clock.meter(self.now)), self._stamp

    def _key_registers(self) -> Any:
        if self._regs_key[0] != (self.now, self._stamp):
            wh = tuple([int(e // 3600) for e in self._energy()])
            self._regs_key = ((self.now, self._stamp), (wh, self._stamp))
        return self._regs_key[1]

    def _key_links(self) -> Any:
        return self._stamp, tuple(
            (
                p.session.window.current,
                sim_keys.usage_count(p.suite),
            )
            for p in self.ports
        )

    def _dims(self) -> Tuple[bytes, ...]:
        if self._dims_cache is None or self._dims_cache[0] != self._gen:
            bt00 = self._bt00()
            self._dims_cache = (
                self._gen,
                (bt00, self._bt21(), self._bt61_with(bt00), self._bt71()),
            )
        return self._dims_cache[1]

    def _ctx(self, tid: int) -> Dict[str, Any]:
        return _flat_context(tid, self._dims())

    def _bt00(self) -> bytes:
        return _bt00_image(frozenset(_RENDER), tuple(_STORED), tuple(L.PARAMETER_SIZES.items()))

    def _bt05(self) -> bytes:
        return tables.encode(5, {"IDENTIFICATION": self.serial.ljust(20)})

    def _bt64(self) -> bytearray:
        return self._lp_img  # the ring is the table image

    def _bt01(self) -> bytes:
        fw = self.banks.version  # x.yy.zz as the NES word ([OPT p.19])
        return tables.encode(
            1,
            {
                "MANUFACTURER": "OSIM",
                "ED_MODEL": "SIMMETER",
                "HW_VERSION_NUMBER": 1,
                "HW_REVISION_NUMBER": 0,
                "FW_VERSION_NUMBER": fw >> 8,
                "FW_REVISION_NUMBER": fw & 0xFF,
                "MFG_SERIAL_NUMBER": self.serial.ljust(16),
            },
            {"BT00": self._dims()[0]},
        )

    def _bt03(self) -> bytes:
        return tables.encode(
            3,
            {
                "ED_MODE": {"METERING": True},
                "ED_STD_STATUS1": {
                    "CLOCK_ERROR": self.clock_error,
                    "TAMPER_DETECT": self.tamper_flag,
                },
                # manufacturer status bit 0: contactor open (the simulator's own);
                # further bits from the extensions (osgp.sim.control)
                "ED_MFG_STATUS": self._mfg_status(),
            },
            self._ctx(3),
        )

    def _mfg_status(self) -> List[bool]:
        bits = [not self.closed] + [False] * 7
        for x in self.ext.values():
            for bit, on in x.mfg_status().items():
                bits[bit] = on
        return bits

    def _bt04(self) -> bytes:
        std = [False] * 80
        mfg = [False] * 64
        entries = []
        for t, (ped, _, _, _) in sorted(self._pending.items())[:_NBR_PENDING]:
            (mfg if t >= ET else std)[t % ET] = True
            entries.append(
                {
                    "EVENT": ped.encode(),
                    "TABLE": {"TBL_PROC_NBR": t % ET, "MFG_FLAG": t >= ET, "STILL_PENDING": True},
                }
            )
        entries += [{"EVENT": bytes(6)}] * (_NBR_PENDING - len(entries))
        return tables.encode(
            4,
            {
                "STD_TBLS_PENDING": std,
                "MFG_TBLS_PENDING": mfg,
                "LAST_ACTIVATION_DATE_TIME": (
                    time_date(self._last_activation) if self._last_activation else _ZERO_TIME
                ),
                "NBR_PENDING_ACTIVATION": len(self._pending),
                "PENDING_ENTRIES": entries,
            },
            self._ctx(4),
        )

    def _bt21(self) -> bytes:
        return _bt21_image()

    def _bt22(self) -> bytes:
        return tables.encode(
            22,
            {"SUMMATION_SELECT": [0, 1], "DEMAND_SELECT": [0], "MIN_OR_MAX_FLAGS": [True]},
            self._ctx(22),
        )

    def _register_values(self, wh: Sequence[int]) -> Dict[str, Any]:

        def block(i: int, sums: List[int]) -> Dict[str, Any]:
            t = time_date(self._max_t[i]) if self._max_t[i] else _ZERO_TIME
            return {
                "SUMMATIONS": sums,
                "DEMANDS": [
                    {"EVENT_TIME": [t], "CUM_DEMAND": self._cum[i], "DEMAND": [self._max[i]]}
                ],
            }

        return {
            "NBR_DEMAND_RESETS": self.demand_resets,
            "TOT_DATA_BLOCK": block(0, [wh[0], wh[1]]),
            "TIER_DATA_BLOCK": [block(1, [wh[2], wh[4]]), block(2, [wh[3], wh[5]])],
        }

    def _bt23(self) -> bytes:
        """BT23 from a template encoded once per configuration and demand
        state; between demand changes only the summations move, and they are
        patched in.  C12.19 BT23 (Optical guide p.24-28): [NBR_DEMAND_RESETS]
        then 1 + NBR_TIERS data blocks of equal size, each opening with
        NBR_SUMMATIONS values of NI_FORMAT1 (fixed width per format)."""
        wh = self._key_registers()[0]
        state = (
            self._gen,
            self.demand_resets,
            tuple(self._max_t),
            tuple(self._cum),
            tuple(self._max),
        )
        tpl = self._bt23_tpl
        if tpl is None or tpl[0] != state:
            ctx = self._ctx(23)
            img = tables.encode(23, self._register_values(wh), ctx)
            fmt = ctx["BT00.FORMAT_CONTROL_3.NI_FORMAT1"]
            head = ctx["BT21.REG_FUNC1_FLAGS.DEMAND_RESET_CTR_FLAG"]
            blocks = 1 + ctx["BT21.NBR_TIERS"]
            width = len(ni_encode(fmt, 0))
            size, rest = divmod(len(img) - head, blocks)
            sums = ctx["BT21.NBR_SUMMATIONS"]
            if rest or blocks != 3 or sums != 2 or size < sums * width:
                return img  # a layout this shortcut does not cover: encode every time
            # where the six register values go: block b, summation j
            at = tuple(head + b * size + j * width for b in range(blocks) for j in range(sums))
            self._bt23_tpl = (state, bytearray(img), fmt, at)
            return img
        _, image, fmt, at = tpl
        # TOT (active, reactive), tier 1 (active_t1, reactive_t1), tier 2 (active_t2, reactive_t2)
        for off, v in zip(at, (wh[0], wh[1], wh[2], wh[4], wh[3], wh[5])):
            value = ni_encode(fmt, v)
            image[off : off + len(value)] = value
        return bytes(image)

    def _snapshot(self, tid: int, snap: Optional[Tuple[float, bytes]]) -> bytes:
        ctx = self._ctx(tid)
        if snap is None:
            return tables.encode(tid, {"END_DATE_TIME": _ZERO_TIME}, ctx)
        at, regs = snap
        return tables.encode(
            tid,
            {
                "END_DATE_TIME": time_date(at),
                "REGISTER_DATA": tables.decode(23, regs, self._ctx(23)),
            },
            ctx,
        )

    def _bt24(self) -> bytes:
        return self._snapshot(24, None)  # one season: never a season change

    def _bt25_image(self) -> bytes:
        return self._snapshot(25, self._bt25)

    def _sr_entry(self, e: Optional[Tuple[int, float, bytes]]) -> Dict[str, Any]:
        if e is None:
            return {"END_DATE_TIME": _ZERO_TIME}
        seq, at, regs = e
        return {
            "SELF_READ_SEQ_NBR": seq,
            "END_DATE_TIME": time_date(at),
            "SELF_READ_REGISTER_DATA": tables.decode(23, regs, self._ctx(23)),
        }

    def _bt26(self) -> bytes:
        """BT26 (Optical guide p.27-29): the list header, then BT21
        NBR_SELF_READS entries of one fixed size.  An entry never changes once
        taken, so only the slots whose ring entry changed since the last
        render are encoded again (in one call with that many entries)."""
        ctx = self._ctx(26)
        head = tables.encode(
            26,
            {
                "LIST_STATUS": {"LIST_TYPE": True, "OVERFLOW_FLAG": self._sr_valid == _SELF_READS},
                "NBR_VALID_ENTRIES": self._sr_valid,
                "LAST_ENTRY_ELEMENT": self._sr_last,
                "LAST_ENTRY_SEQ_NUMBER": max(self._sr_seq, 0),
                "NBR_UNREAD_ENTRIES": self._sr_unread,
                "SELF_READS": [],
            },
            {**ctx, "BT21.NBR_SELF_READS": 0},
        )
        enc = self._sr_enc
        if enc is None or enc[0] is not ctx or len(enc[1]) != len(self._sr):
            enc = self._sr_enc = (ctx, [False] * len(self._sr), [b""] * len(self._sr))
        _, made_from, parts = enc
        slots = [i for i, e in enumerate(self._sr) if made_from[i] is not e]
        if slots:
            entries = [self._sr_entry(self._sr[i]) for i in slots]
            new = _encode_entries(26, "SELF_READS", "BT21.NBR_SELF_READS", ctx, entries, len(head))
            for i, part in zip(slots, new):
                made_from[i], parts[i] = self._sr[i], part
        return head + b"".join(parts)

    def _bt28(self) -> bytes:
        m = self.clock.meter(self.now)
        left = max(0, int(self._dmd_next - m))
        elapsed = max(1.0, DEMAND_INTERVAL - (self._dmd_next - m))
        avg = int((self._energy()[0] - self._dmd_j0) / elapsed)
        p, q = self._power_now()
        return tables.encode(
            28,
            {
                "PRESENT_DEMANDS": [
                    {
                        "TIME_REMAINING": TimeDate(
                            0, 0, 0, left // 3600, left // 60 % 60, left % 60
                        ),
                        "DEMAND_VALUE": avg,
                    }
                ],
                # the sources BT27 selects: forward, reverse active W, import, export var
                "PRESENT_VALUES": [max(p, 0), max(-p, 0), max(q, 0), max(-q, 0)],
            },
            self._ctx(28),
        )

    def _clock_values(self) -> Dict[str, Any]:
        d = civil(self.clock.meter(self.now))
        return {
            "CLOCK_CALENDAR": TimeDate(d.year, d.month, d.day, d.hour, d.minute, d.second),
            # C12.19 DAY_OF_WEEK: 0 = Sunday; the clock runs on UTC
            "TIME_DATE_QUAL": {"DAY_OF_WEEK": (d.weekday() + 1) % 7, "GMT_FLAG": True},
        }

    def _bt52(self) -> bytes:
        return tables.encode(52, self._clock_values())

    def _bt55(self) -> bytes:
        return tariff.clock_state(self)  # local clock and TOU status from BT53 / BT54

    def _bt61(self) -> bytes:
        return self._bt61_with(self._dims()[0])

    def _bt61_with(self, bt00: bytes) -> bytes:
        return _bt61_image(self.lp, len(self._lp_img), bt00)

    def _bt62(self) -> bytes:
        return _bt62_image(self.lp.channels, self._dims())

    def _bt63(self) -> bytes:
        return tables.encode(
            63,
            {
                "LP_STATUS_SETS": [
                    {
                        "LP_SET_STATUS_FLAGS": {
                            "OVERFLOW_FLAG": self._lp_overflow,
                            "LIST_TYPE": 1,
                            "ACTIVE_MODE_FLAG": self.lp_enabled,
                        },
                        "NBR_VALID_BLOCKS": self._lp_valid,
                        "LAST_BLOCK_ELEMENT": self._lp_last,
                        "LAST_BLOCK_SEQ_NBR": max(self._lp_seq, 0),
                        "NBR_UNREAD_BLOCKS": self._lp_unread,
                        "NBR_VALID_INT": self._lp_nvi,
                    }
                ]
            },
            self._ctx(63),
        )

    def _bt71(self) -> bytes:
        return _bt71_image()

    def _bt74_entry(self, i: int) -> Dict[str, Any]:
        t, num, seq, user, code, arg = _LOG_REC.unpack_from(self._log, i * _LOG_REC.size)
        return {
            "HISTORY_TIME": time_date(t) if t else _ZERO_TIME,
            "EVENT_NUMBER": num,
            "HISTORY_SEQ_NBR": seq,
            "USER_ID": user,
            "HISTORY_CODE": {"TBL_PROC_NBR": code & 0x7FF, "STD_VS_MFG_FLAG": code >> 11},
            "HISTORY_ARGUMENT": arg,
        }

    def _bt74(self) -> bytes:
        """BT74 (Optical guide p.49, p.51): the header, then NBR_HISTORY_ENTRIES
        entries of one fixed size.  Only the ring slots logged since the last
        read are encoded again (in one call with that many entries); the
        others keep the bytes they had, and never-logged slots share one
        encoding."""
        ctx = self._ctx(74)
        n = ctx["BT71.NBR_HISTORY_ENTRIES"]
        head = tables.encode(
            74,
            {
                "HIST_FLAGS": {"LIST_TYPE": True, "OVERFLOW_FLAG": self._log_overflow},
                "NBR_VALID_ENTRIES": self._log_valid,
                "LAST_ENTRY_ELEMENT": self._log_last,
                "LAST_ENTRY_SEQ_NBR": max(self._log_seq, 0),
                "NBR_UNREAD_ENTRIES": self._log_unread,
                "ENTRIES": [],
            },
            {**ctx, "BT71.NBR_HISTORY_ENTRIES": 0},
        )
        enc = self._log_enc
        blank: List[int] = []  # never-logged slots: one is encoded, the others share it
        if enc is None or enc[0] is not ctx:
            enc = self._log_enc = (ctx, [b""] * n)
            rec = _LOG_REC.size
            blank = [i for i in range(n) if not any(self._log[i * rec : (i + 1) * rec])]
            self._log_dirty = ((1 << n) - 1) & ~sum(1 << i for i in blank[1:])
        parts = enc[1]
        slots = [i for i in range(n) if self._log_dirty >> i & 1]
        if slots:
            entries = [self._bt74_entry(i) for i in slots]
            count = "BT71.NBR_HISTORY_ENTRIES"
            new = _encode_entries(74, "ENTRIES", count, ctx, entries, len(head))
            for i, part in zip(slots, new):
                parts[i] = part
            for i in blank[1:]:
                parts[i] = parts[blank[0]]
            self._log_dirty = 0
        return head + b"".join(parts)

    def _et04(self) -> bytes:
        nid, sn = bytes(6), (0, 0)
        mep_seq = plc_seq = 0
        aes = False
        for p in self.ports:
            for a in getattr(p.carrier, "addresses", ()):
                if isinstance(a, lon.NeuronId):
                    nid = bytes(a.nid)
                elif isinstance(a, lon.SubnetNode):
                    sn = (a.subnet, a.node)
            aes = aes or bool(getattr(p.suite, "owns_sequence", False))
            cur = p.session.window.current
            if p.link == "mep":
                mep_seq = cur
            elif p.link == "plc":
                plc_seq = cur
        return tables.encode(
            ET + 4,
            {
                "SEQUENCE_NUMBER": plc_seq,
                "TRANSCEIVER_ID": nid,
                "SUBNET_ID": sn[0],
                "NODE_ID": sn[1],
                "RATED_FREQUENCY": 50,
                "MAX_CURRENT": 60,
                "RATED_VOLTAGE": 230,
                "SECURITY_MODE": 2 if aes else 0,  # 0 RC4, 2 OSGP-AES-128-PSK ([MEP p.66-67])
                "MEP_SEQ_NBR": mep_seq,
                "MAX_KEY_USAGE_COUNT": sim_keys.max_usage(self.ports),
                # secure broadcast receipt, base B and delta D ([MEP p.61-62], osgp.sim.broadcast)
                "BROADCAST_RECEIPT": (
                    time_date(self.broadcasts.receipt) if self.broadcasts.receipt else _ZERO_TIME
                ),
                "BROADCAST_BASE": self.broadcasts.range.base,
                "BROADCAST_DELTA": self.broadcasts.range.delta,
            },
        )

    def _et11(self) -> bytes:
        return tables.encode(
            ET + 11,
            {
                "NBR_GROUP_IDS": L.MAX_GROUPS,
                "METER_ONE_TIME_READ_QUEUE_SIZE": L.ONE_TIME_QUEUE,
                "TIME_BASED_RELAY_SWITCHES": L.RELAY_SWITCHES,
                "TRANSACTION_REQUEST_LENGTH": 896,
                "TRANSACTION_RESPONSE_LENGTH": 1785,
                "ET17_BITMAP_SIZE": self.banks.bitmap_size,  # [OPT p.41]
            },
        )

    def _et21(self) -> bytes:
        c = self.lp
        base = self._lp_last * c.block_size
        return tables.encode(
            ET + 21,
            {
                "DATA_SETS": [
                    {
                        "CURRENT_BLOCK_ADDRESS": base,
                        "CURRENT_INTERVAL_ADDRESS": base + c.int0 + self._lp_nvi * c.int_size,
                        "BLOCK_SIZE": c.block_size,
                        "BLOCK_HEADER_SIZE": c.int0,
                        "NBR_VALID_BLOCKS": self._lp_valid,
                        "NBR_VALID_INTERVALS": self._lp_nvi,
                        "LAST_BLOCK_INDEX": self._lp_last,
                        "LAST_INTERVAL_NUMBER": max(self._lp_nvi - 1, 0),
                        "SIMPLE_STATUS_OFFSET": c.simple_off,
                        "SIMPLE_STATUS_SIZE": (c.intervals + 7) // 8,
                        "INTERVAL0_OFFSET": c.int0,
                        "INTERVAL_SIZE": c.int_size,
                        "CHANNEL0_OFFSET": c.ext,
                        "EXTENDED_STATUS_COMMON": 1,
                        "NBR_CHANNELS": c.channels,
                        "INTERVAL_TIME": c.interval_min,
                        "SOURCES": list(range(c.channels)) + [0] * (8 - c.channels),
                    }
                ]
            },
            self._ctx(ET + 21),
        )

    def _et23(self) -> bytes:
        # DISCONNECT_INTERNAL_STATUS: 0 closed, 1 closing, 2 opened, 3 opening [MEP p.99]; the
        # simulated contactor changes state at one instant, so it shows 0 or 2
        return tables.encode(
            ET + 23,
            {
                "DISCONNECT_INTERNAL_STATUS": 0 if self.closed else 2,
                "ACTIVE_CALENDAR_ID": tariff.calendar(self).calendar_id,  # [MEP p.229]
            },
        )

    def _et33(self) -> bytes:
        # group configuration (osgp.tables.control ET33, INFERRED): unused ids 0x0000
        ids = list(self.groups) + [0] * (L.MAX_GROUPS - len(self.groups))
        ctx = {"ET11.NBR_GROUP_IDS": L.MAX_GROUPS}
        return tables.encode(ET + 33, {"NBR_GROUPS": len(self.groups), "GROUP_IDS": ids}, ctx)

    def _key_groups(self) -> Any:
        return tuple(self.groups)

    def _et54(self) -> bytes:
        usage = 0
        for p in self.ports:
            usage += sim_keys.usage_count(p.suite)
        return tables.encode(
            ET + 54,
            {
                "LOAD_PROFILE_STATUS": {"LOAD_PROFILE_DISABLED": not self.lp_enabled},
                "UNICAST_KEY_USAGE_COUNT": usage,
                "BROADCAST_KEY_USAGE_COUNT": self.broadcasts.usage,
                "SUPPORTED_SECURITY_MODES": 0x05,  # RC4 and AES ([MEP] ET54 offset 90 default)
            },
        )


class _Procedures:
    """The procedure table a DeviceSession looks handlers up in (``get``):
    one per meter, the handlers are :data:`_HANDLERS`."""

    __slots__ = ("meter",)

    def __init__(self, meter: SimMeter) -> None:
        self.meter = meter

    def get(self, pid: int) -> Optional[Callable[[bytes], Any]]:
        if pid not in _HANDLERS:
            return None
        return partial(self.meter._call, pid)


#: Per-meter extensions: name -> factory of an object with ``due()`` (virtual
#: time of its next own event or None), ``fire()``, ``written(table)`` and
#: ``mfg_status()`` (BT03 manufacturer bits); filled by osgp.sim.control and
#: osgp.sim.onetime, which also add their procedures and tables below.
_EXTENSIONS: Dict[str, Callable[[SimMeter], Any]] = {}

_HANDLERS: Dict[int, Callable[[SimMeter, bytes], Any]] = {
    L.BP05: SimMeter._bp05,
    L.BP10: SimMeter._bp10,
    L.BP12: SimMeter._bp12,
    L.BP13: SimMeter._bp13,
    L.BP14: SimMeter._bp14,
    L.BP15: SimMeter._bp15,
    L.EP11: SimMeter._ep11,
    L.EP12: SimMeter._ep12,
    L.EP16: SimMeter._ep16,
    L.EP23: SimMeter._ep23,
    L.EP27: SimMeter._ep27,
    L.EP34: SimMeter._ep34,
    L.EP45: sim_keys.ep45,
    L.EP08: lambda m, p: m.banks.ep08(p),  # firmware download (osgp.sim.firmware)
    L.EP09: lambda m, p: m.banks.ep09(p),
    L.EP10: lambda m, p: m.banks.ep10(p),
}

# Rendered tables: id -> (render function, key function).  An image is encoded
# again when it is read and its key changed since it was last encoded.
_RENDER: Dict[int, Tuple[Callable[[SimMeter], Any], Callable[[SimMeter], Any]]] = {
    3: (SimMeter._bt03, SimMeter._key_state),
    4: (SimMeter._bt04, SimMeter._key_state),
    23: (SimMeter._bt23, SimMeter._key_registers),
    25: (SimMeter._bt25_image, SimMeter._key_state),
    26: (SimMeter._bt26, SimMeter._key_state),
    28: (SimMeter._bt28, SimMeter._key_second),
    50: (tariff.bt50, SimMeter._key_config),
    52: (SimMeter._bt52, SimMeter._key_second),
    55: (SimMeter._bt55, SimMeter._key_second),
    63: (SimMeter._bt63, SimMeter._key_state),
    64: (SimMeter._bt64, SimMeter._key_state),
    74: (SimMeter._bt74, SimMeter._key_state),
    ET + 4: (SimMeter._et04, SimMeter._key_links),
    ET + 21: (SimMeter._et21, SimMeter._key_state),
    ET + 23: (SimMeter._et23, SimMeter._key_state),
    ET + 33: (SimMeter._et33, SimMeter._key_groups),
    ET + 54: (SimMeter._et54, SimMeter._key_links),
    0: (SimMeter._bt00, SimMeter._key_config),
    1: (SimMeter._bt01, SimMeter._key_config),
    5: (SimMeter._bt05, SimMeter._key_config),
    20: (SimMeter._bt21, SimMeter._key_config),
    21: (SimMeter._bt21, SimMeter._key_config),
    22: (SimMeter._bt22, SimMeter._key_config),
    24: (SimMeter._bt24, SimMeter._key_config),
    60: (SimMeter._bt61, SimMeter._key_config),
    61: (SimMeter._bt61, SimMeter._key_config),
    62: (SimMeter._bt62, SimMeter._key_config),
    70: (SimMeter._bt71, SimMeter._key_config),
    71: (SimMeter._bt71, SimMeter._key_config),
    ET + 11: (SimMeter._et11, SimMeter._key_config),
    ET + 17: (lambda m: m.banks.et17(), SimMeter._key_state),  # code bank info
}


def _slow(polls: int, result: Any) -> Iterator[Tuple[int, bytes]]:
    """``polls`` BT08 reads answered "accepted", then the procedure's own
    steps (the BT07 write takes the first step)."""
    for _ in range(polls + 1):
        yield P.RESULT_ACCEPTED, b""
    if isinstance(result, tuple):
        yield result
    else:
        yield from result
