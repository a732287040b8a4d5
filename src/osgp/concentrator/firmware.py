"""Firmware download as a tracked, resumable operation job.

One job brings one image to its target meters (layouts in
osgp.services.firmware, INFERRED):

1. **prepare**, per meter: BT01 gives the running version (a meter already
   on the new one is confirmed at once); ET04 offset 82 the broadcast base B
   [MEP p.61-62]; EP08 prepares the inactive bank and answers how many
   packets of this image it already holds (a resumed job erases nothing);
   ET17 says which ones when it holds some.
2. **broadcast**, per channel: every packet missing at ``rebroadcast_at``
   or more of the channel's meters goes once to the job's group by secure
   broadcast (:class:`~osgp.concentrator.broadcast.Broadcaster`, the
   unacknowledged-repeated service with ``repeats``), numbered above every
   base B the meters reported.
3. **repair**, per meter: ET17 read, only the missing packets sent by
   unicast EP09 (selector SELECT_NONE: one exchange a packet, the bitmap
   checks them), up to ``repair_rounds`` times; then EP10 at ``switch_at``
   (UTC; a moment already past switches at once).  A meter whose image does
   not verify answers EP10 with result 3 and ends ``failed``: it is never
   switched.
4. **confirm**, per meter, after the switch moment: BT01 must show the new
   version (the meter logs "code bank changed" then).

A target's outcome is ``sent`` from EP08 on; its ``firmware`` cursor keeps
the stage reached (``erased``, ``switch`` with the moment); that is all
:meth:`resume` needs
after a restart: targets in ``erased`` are prepared again (EP08 erases
nothing of the same image) and the broadcast round repeats only the packets
still missing at several meters; targets in ``switch`` are confirmed.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Dict, Generator, List, Optional, Set

from osgp import tables
from osgp.concentrator.broadcast import Broadcaster
from osgp.concentrator.collect import read_dims
from osgp.concentrator.engine import Meter, Task
from osgp.errors import ConfigurationError, DeviceError, MalformedError, ProtocolError
from osgp.services import firmware as F
from osgp.services import procedures as P
from osgp.services.codes import ResponseCode
from osgp.services.procedures import ProcedureError
from osgp.session.events import Operation

__all__ = ["FirmwareRunner", "BROADCAST_KEY", "firmware_params"]

TaskGen = Generator[Operation, Any, Any]
BROADCAST_KEY = "plc-broadcast"  # store key purpose of a meter's broadcast key
CURSOR = "firmware"  # store cursor: the job and stage a meter reached
_ET04_BASE = 82  # ET04 "Secure broadcast base value (B)", UINT32 [MEP p.61-62]
_BUSY_S = 5.0
_CONFIRM_S = 5.0  # after the switch moment, the meter is read this much later


class NotSwitched(ProtocolError):
    """The meter answered, but it does not run the new image."""


def _same_download(bank: F.CodeBank, d: F.Download) -> None:
    """ET17 describes the download ``d`` and counts its packets, so that its
    bitmap names no packet past the image."""
    if (bank.length, bank.packet_size, bank.new_version) != (d.length, d.packet_size, d.version):
        raise NotSwitched("ET17 shows another download than this job's")
    if bank.packets != d.packets:  # PACKETS, UINT16 at offset 10 (osgp.services.firmware)
        raise MalformedError.in_table(
            "ET17",
            "PACKETS",
            10,
            f"{bank.packets} packets, the image of {d.length} bytes has {d.packets}"
            f" of {d.packet_size}",
        )


def firmware_params(
    image: bytes,
    version: int,
    group: int,
    *,
    switch_at: Optional[float] = None,
    packet_size: int = F.PACKET_SIZE,
    check_type: int = F.CHECK_CRC32,
    key: Optional[bytes] = None,
    repeats: int = 2,
    rebroadcast_at: int = 3,
    repair_rounds: int = 3,
    broadcast: bool = True,
) -> Dict[str, Any]:
    """A firmware job's parameters (what the store keeps)."""
    d = F.Download.of(image, version, packet_size=packet_size, check_type=check_type, key=key)
    if not 0 < group < 256:
        raise ConfigurationError(f"firmware: a broadcast group is 1..255, not {group}")
    return {
        "image": image.hex(),
        "version": version,
        "group": group,
        "switch_at": switch_at,
        "packet_size": packet_size,
        "check_type": check_type,
        "check": d.check.hex(),
        "repeats": repeats,
        "rebroadcast_at": rebroadcast_at,
        "repair_rounds": repair_rounds,
        "broadcast": broadcast,
    }


@dataclass
class _Job:
    id: int
    params: Dict[str, Any]
    image: bytes
    download: F.Download
    stage: Dict[int, str] = field(default_factory=dict)  # device -> prepare/repair/confirm
    missing: Dict[int, Set[int]] = field(default_factory=dict)
    bases: Dict[int, int] = field(default_factory=dict)
    broadcasting: int = 0


class FirmwareRunner:
    """Runs ``firmware`` jobs for :class:`~osgp.concentrator.operations.Operations` ``ops``."""

    def __init__(self, ops: Any) -> None:
        self.ops, self.eng, self.store = ops, ops.eng, ops.store
        self.jobs: Dict[int, _Job] = {}
        self.broadcasters: Dict[int, Broadcaster] = {}  # id(channel) ->
        self._active: Dict[int, int] = {}  # device -> job
        self.eng.on_task_done.append(self._task_done)

    @property
    def idle(self) -> bool:
        return not self._active and not any(j.broadcasting for j in self.jobs.values())

    def run(self, job_id: int) -> None:
        job = self.store.job(job_id)
        p = dict(job.params)
        image = bytes.fromhex(p["image"])
        d = F.Download(
            len(image), p["packet_size"], p["version"], p["check_type"], bytes.fromhex(p["check"])
        )
        j = self.jobs[job_id] = _Job(job_id, p, image, d)
        for o in self.store.outcomes(job_id):
            if o.state not in ("pending", "failed", "sent") or o.device_id in self._active:
                continue
            m = self.eng.meters.get(o.device_id)
            if m is None:
                continue
            self._active[m.device_id] = job_id
            stage = self.store.cursor(m.device_id, CURSOR) or {}
            if o.state == "sent" and stage.get("job") == job_id and stage["stage"] == "switch":
                at = self._monotonic(float(stage["at"])) + _CONFIRM_S
                self._go(j, m, "confirm", at)
            else:
                self._go(j, m, "prepare")

    # -- scheduling -------------------------------------------------------------------------
    def _utc(self) -> float:
        return self.eng.runtime.utc(self.eng.runtime.time())

    def _monotonic(self, utc: float) -> float:
        rt = self.eng.runtime
        now = rt.time()
        return max(now, now + utc - rt.utc(now))

    def _go(self, j: _Job, m: Meter, stage: str, at: Optional[float] = None) -> None:
        j.stage[m.device_id] = stage
        rt = self.eng.runtime
        if at is not None and at > rt.time():
            rt.call_at(at, partial(self._launch, j, m))
        else:
            self._launch(j, m)

    def _launch(self, j: _Job, m: Meter, now: Optional[float] = None) -> None:
        if m.busy:
            rt = self.eng.runtime
            rt.call_at(rt.time() + _BUSY_S, partial(self._launch, j, m))
            return
        stage = j.stage[m.device_id]
        gen = getattr(self, "_" + stage)(j, m)
        self.eng.start(m, gen, f"fw:{stage}", job_id=j.id)

    def _task_done(self, task: Task) -> None:
        m = task.meter
        job_id = self._active.get(m.device_id)
        if job_id is None or task.job_id != job_id or not task.name.startswith("fw:"):
            return
        j, eng = self.jobs[job_id], self.eng
        self.ops._save_session(m)
        err = task.error
        if err is None:
            eng.succeeded(m)
            nxt = task.result
            if nxt == "done":
                self._finish(j, m, "confirmed", detail=self._report(j))
            elif nxt == "ready":
                j.stage[m.device_id] = "ready"
                self._maybe_broadcast(j)
            elif nxt == "confirm":  # a set moment: read the meter a little after it
                at = j.params.get("switch_at")
                t = None if at is None else self._monotonic(float(at)) + _CONFIRM_S
                self._go(j, m, "confirm", t)
            elif nxt == "wait":  # the switch is still to come on the meter's clock
                self._go(j, m, "confirm", eng.runtime.time() + _CONFIRM_S)
            else:
                self._go(j, m, nxt)
            return
        if isinstance(err, (DeviceError, ProcedureError, NotSwitched)):
            eng.succeeded(m)
            code = err.code if isinstance(err, DeviceError) else getattr(err, "result", None)
            self._finish(j, m, "failed", code=code, detail=str(err))
        elif eng.failed(m, err):
            rt = eng.runtime
            rt.call_at(rt.time() + eng.policy.retry_s, partial(self._launch, j, m))
        else:
            self._finish(j, m, "given_up", detail=str(err))

    def _finish(self, j: _Job, m: Meter, state: str, **kw: Any) -> None:
        self.store.set_outcome(j.id, m.device_id, state, at=self._utc(), **kw)
        j.stage.pop(m.device_id, None)
        j.missing.pop(m.device_id, None)
        self._active.pop(m.device_id, None)
        self._maybe_broadcast(j)

    def _report(self, j: _Job) -> str:
        return json.dumps({"version": F.version_text(j.download.version), "action": "EP10"})

    def _switch_at(self, j: _Job) -> float:
        at = j.params.get("switch_at")
        return float(at) if at is not None else self._utc()

    def _sent(self, j: _Job, m: Meter, stage: Dict[str, Any]) -> None:
        """The outcome goes ``sent``; the stage reached is the meter's
        ``firmware`` cursor (a ``sent`` outcome keeps its first detail)."""
        self.ops._save_session(m)
        self.store.set_cursor(m.device_id, CURSOR, {"job": j.id, **stage})
        self.store.set_outcome(j.id, m.device_id, "sent", at=self._utc(), detail=json.dumps(stage))

    # -- the broadcast round ------------------------------------------------------------------
    def _maybe_broadcast(self, j: _Job) -> None:
        """When no target is being prepared any more: broadcast what is
        missing at several meters of each channel, then repair each meter."""
        if j.broadcasting or any(s == "prepare" for s in j.stage.values()):
            return
        ready = [d for d, s in j.stage.items() if s == "ready"]
        if not ready:
            return
        by_channel: Dict[int, List[int]] = {}
        for d in ready:
            j.stage[d] = "broadcast"
            by_channel.setdefault(id(self.eng.meters[d].channel), []).append(d)
        p = j.params
        for devices in by_channel.values():
            frames = self._broadcast(j, devices) if p["broadcast"] else 0
            if frames:
                j.broadcasting += 1
            else:
                self._repair_all(j, devices)

    def _broadcast(self, j: _Job, devices: List[int]) -> int:
        p = j.params
        keyed = [d for d in devices if self.store.key(d, BROADCAST_KEY) is not None]
        if not keyed:
            return 0
        chan = self.eng.meters[keyed[0]].channel
        key = self.store.key(keyed[0], BROADCAST_KEY)
        keyed = [d for d in keyed if self.store.key(d, BROADCAST_KEY) == key]
        count: Dict[int, int] = {}
        for d in keyed:
            for i in j.missing.get(d, ()):
                count[i] = count.get(i, 0) + 1
        wanted = sorted(i for i, n in count.items() if n >= p["rebroadcast_at"])
        if not wanted:
            return 0
        b = self.broadcasters.get(id(chan))
        if b is None:
            b = self.broadcasters[id(chan)] = Broadcaster(chan, key, priority=self.ops.priority)
        b.next_seq = max([b.next_seq] + [j.bases.get(d, 0) + 1 for d in keyed])
        rt = self.eng.runtime
        done = partial(self._broadcast_done, j, devices)
        for n, i in enumerate(wanted):
            last = n == len(wanted) - 1
            b.procedure(
                p["group"],
                F.EP09,
                j.download.packet(j.image, i),
                repeats=p["repeats"],
                done=(lambda now: rt.call_at(now + 1.0, done)) if last else None,
            )
        return len(wanted)

    def _broadcast_done(self, j: _Job, devices: List[int], now: float) -> None:
        j.broadcasting -= 1
        self._repair_all(j, devices)

    def _repair_all(self, j: _Job, devices: List[int]) -> None:
        for d in devices:
            if j.stage.get(d) == "broadcast":
                self._go(j, self.eng.meters[d], "repair")

    # -- the per-meter stages ------------------------------------------------------------------
    def _call(self, m: Meter, number: int, params: bytes, **kw: Any) -> TaskGen:
        """Procedure ``number``.  A BT07 write repeated through a repeater
        chain reaches the meter as a new frame and is refused as a repeated
        PSN (0x04 ONP, MEP p.52) after the first copy ran: BT08 then holds
        the outcome (EP09, answered nowhere, is checked by the next ET17 read)."""
        s = m.session
        assert s is not None
        try:
            return (yield s.call(number, params, mfg=True, priority=self.ops.priority, **kw))
        except DeviceError as exc:
            if exc.code != ResponseCode.ONP:
                raise
        if kw.get("selector") == P.SELECT_NONE:
            return b""
        res = P.ProcedureResult.decode((yield s.read(P.BT08, priority=self.ops.priority)))
        if res.proc_id != number | 0x800:
            raise NotSwitched(f"BT08 holds procedure {res.proc_id}, not {number | 0x800}")
        return res.check()

    def _read(self, m: Meter, table: int, offset: int, count: int) -> TaskGen:
        assert m.session is not None
        data = yield m.session.read(table, offset, count, priority=self.ops.priority)
        if len(data) < count:
            raise ProtocolError(f"table {table}: {len(data)} bytes read, not {count}")
        return data

    def _version(self, m: Meter) -> TaskGen:
        """BT01 FW_VERSION_NUMBER and FW_REVISION_NUMBER as one word ([OPT p.19])."""
        assert m.session is not None
        bt01 = yield m.session.read(1, priority=self.ops.priority)
        yield from read_dims(m.session, m.dims, self.ops.priority)
        d = tables.decode(1, bt01, {"BT00": m.dims[0]})
        return (d["FW_VERSION_NUMBER"] << 8) | d["FW_REVISION_NUMBER"]

    def _bank(self, j: _Job, m: Meter) -> TaskGen:
        """ET17 header and as much of the bitmap as the image needs."""
        n = F.ET17_HEADER + (j.download.packets + 7) // 8
        return F.CodeBank.decode((yield from self._read(m, F.ET17, 0, n)))

    def _prepare(self, j: _Job, m: Meter) -> TaskGen:
        if (yield from self._version(m)) == j.download.version:
            return "done"
        base = yield from self._read(m, 2048 + 4, _ET04_BASE, 4)
        j.bases[m.device_id] = struct.unpack("<I", base)[0]
        self._sent(j, m, {"stage": "erased"})
        held = yield from self._call(m, F.EP08, j.download.encode())
        if len(held) != 2:
            raise NotSwitched(f"EP08 answered {bytes(held).hex()}, not a packet count")
        n = struct.unpack("<H", held)[0]
        every = set(range(j.download.packets))
        if n == 0:
            j.missing[m.device_id] = every
        elif n >= j.download.packets:
            j.missing[m.device_id] = set()
        else:
            bank = yield from self._bank(j, m)
            _same_download(bank, j.download)
            j.missing[m.device_id] = set(bank.missing())
        return "ready"

    def _repair(self, j: _Job, m: Meter) -> TaskGen:
        d = j.download
        for _ in range(int(j.params["repair_rounds"]) + 1):
            bank = yield from self._bank(j, m)
            if bank.active_version == d.version:
                return "confirm"  # switched already (an EP10 whose answer was lost)
            _same_download(bank, d)
            gone = bank.missing()
            if not gone:
                break
            for i in gone:
                yield from self._call(m, F.EP09, d.packet(j.image, i), selector=P.SELECT_NONE)
        else:
            raise NotSwitched(f"{len(gone)} packets still missing after the repair rounds")
        at = self._switch_at(j)
        self._sent(j, m, {"stage": "switch", "at": at})
        when = 0 if at <= self._utc() else int(at)
        yield from self._call(m, F.EP10, struct.pack("<I", when))
        return "confirm"

    def _confirm(self, j: _Job, m: Meter) -> TaskGen:
        if (yield from self._version(m)) == j.download.version:
            return "done"
        bank = yield from self._bank(j, m)
        if bank.state == F.SCHEDULED:
            return "wait"  # not yet (the meter's clock is behind)
        if bank.state in (F.RECEIVING, F.COMPLETE) and bank.new_version == j.download.version:
            return "repair"  # EP10 was lost with a restart
        raise NotSwitched(
            f"meter runs {F.version_text((yield from self._version(m)))}, ET17 state {bank.state}"
        )


# -- osgp op firmware ---------------------------------------------------------------------------
def add_firmware_arguments(p: Any) -> None:
    """The arguments of ``osgp op firmware`` (osgp.concentrator.cli_ops)."""
    p.add_argument("image", help="the firmware image file")
    p.add_argument("--fw-version", required=True, help="the image's version x.yy.zz")
    p.add_argument("--group", type=int, required=True, help="broadcast group of the meters")
    p.add_argument("--switch-at", type=float, default=None, help="UTC epoch second to switch")
    p.add_argument("--repeats", type=int, default=2, help="copies after each broadcast")
    p.add_argument("--unicast", action="store_true", help="no broadcast: every packet unicast")


def firmware_cli_params(args: Any) -> Dict[str, Any]:
    try:
        major, minor, patch = (int(x) for x in args.fw_version.split("."))
    except ValueError:
        raise ConfigurationError(f"--fw-version {args.fw_version!r}: x.yy.zz") from None
    try:
        with open(args.image, "rb") as fh:
            image = fh.read()
    except OSError as exc:
        raise ConfigurationError(f"firmware image {args.image}: {exc.strerror}") from None
    return firmware_params(
        image,
        F.version_word(major, minor, patch),
        args.group,
        switch_at=args.switch_at,
        repeats=args.repeats,
        broadcast=not args.unicast,
    )
