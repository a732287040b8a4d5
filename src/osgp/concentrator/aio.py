"""The concentrator on real links: an asyncio runtime and channels.

:class:`AsyncRuntime` gives the engine the event loop's clock and timers;
:class:`AsyncChannel` is one medium (a CN/IP UDP endpoint, ISO/IEC 14908-4,
or any other :mod:`osgp.transport` asyncio transport carrying LonTalk LPDUs)
with the :class:`~osgp.session.Router` and :class:`~osgp.session.Arbiter` its
sessions live on.  The channel routes each received LPDU to the waiting
session and, once the LPDUs that arrived together (every datagram waiting at
a wake-up) are routed, sends what the arbiter gives while the medium has
room; one timer at the earliest deadline calls the sessions' timeouts.
Sessions that have something new to send outside those callbacks (a task
resumed by a store commit) schedule one such send through the arbiter's
``on_dirty`` hook: no task or future per exchange.

:func:`run_collection` loads the commissioned meters of some segments from a
store and runs collection rounds over them; ``python -m
osgp.concentrator.aio`` does the same from the command line, so a collection
can be killed at any moment and started again (the store's cursors and unique
keys make the restart lose and double nothing).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections import Counter
from dataclasses import replace
from typing import Any, Callable, Dict, List, Optional, Sequence

from osgp.concentrator.engine import KEY_PURPOSE, Concentrator, StatusPolicy
from osgp.concentrator.rawframes import FrameKeeper
from osgp.concentrator.schedule import Collector, Round
from osgp.errors import OSGPError
from osgp.link import lon
from osgp.session import Arbiter, Router
from osgp.session.profiles import PLC, LinkProfile
from osgp.transport.aio import AsyncTransport, open_transport
from osgp.transport.core import CnipFraming
from osgp.transport.errors import TransportClosed, TransportError

__all__ = [
    "AsyncRuntime",
    "AsyncChannel",
    "open_channel",
    "attach_channels",
    "close_channels",
    "plc_profile",
    "run_collection",
    "commission",
    "main",
]

log = logging.getLogger("osgp.concentrator")

CONCENTRATOR = lon.SubnetNode(1, 1)  # the default node of a channel's concentrator
QUICK_RETRIES = StatusPolicy(attempts=4, retry_s=1.0)
WRITE_BATCH_S = 0.02  # readings of the meters that finish within 20 ms share a commit


class AsyncRuntime:
    """The engine's :class:`~osgp.concentrator.engine.Runtime` on an event
    loop: ``time()`` is ``loop.time()``, ``utc`` the wall clock at that time."""

    def __init__(self, loop: Optional[asyncio.AbstractEventLoop] = None) -> None:
        self.loop = loop if loop is not None else asyncio.get_running_loop()
        self._offset = time.time() - self.loop.time()

    def time(self) -> float:
        return self.loop.time()

    def utc(self, now: float) -> float:
        return self._offset + now

    def call_at(self, t: float, fn: Callable[[float], None]) -> None:
        self.loop.call_at(t, lambda: fn(self.loop.time()))


class AsyncChannel:
    """A Channel of :class:`~osgp.concentrator.engine.Concentrator` over an
    open asyncio ``transport``.  ``max_outstanding``: exchanges on the medium
    at once (1: a half-duplex power line behind the link).  CN/IP carries
    the LPDU without its CRC (ISO/IEC 14908-4), so the sessions of a CN/IP
    channel build and check none.  ``profile``: the sessions' link profile
    (default :data:`osgp.session.profiles.PLC`; e.g. shorter response timers
    where the meters answer over an IP network).

    Start :meth:`run` as a task; :meth:`close` ends it.  Nothing a peer sends
    raises out of it: what cannot be routed is counted in ``router.drops``,
    what a session rejects in its own ``drops``, what failed in ``stats``."""

    def __init__(
        self,
        name: str,
        transport: AsyncTransport,
        concentrator: lon.SubnetNode = CONCENTRATOR,
        *,
        max_outstanding: int = 1,
        profile: Optional[LinkProfile] = None,
    ) -> None:
        self.name, self.transport, self.concentrator = name, transport, concentrator
        self.link_profile = profile
        self.crc = not isinstance(transport.core.framing, CnipFraming)
        self.router = Router(concentrator, crc=self.crc)
        self.arbiter = Arbiter(max_outstanding=max_outstanding)
        self.on_events: Optional[Callable[[List[Any]], None]] = None
        self.events: List[Any] = []  # kept here while no engine takes them
        self.stats: Counter = Counter()
        self._loop = asyncio.get_running_loop()
        self._done: asyncio.Future = self._loop.create_future()  # run() ends with it
        self.arbiter.on_dirty = self._wakeup  # a session has something new to send
        self._closed = False
        self._inside = False  # in a callback that pumps when it ends
        self._pump_soon = False  # a pump is scheduled (call_soon)
        self._slow = False  # a frame waits for the transport (send's coroutine)
        self._timer: Optional[asyncio.TimerHandle] = None
        self._timer_at = 0.0
        self._now: Optional[float] = None  # the loop's time at the frames that arrived together
        # every frame sent ("tx") and received ("rx"), e.g. a rawframes.FrameKeeper
        self.tap: Optional[Callable[[str, bytes], None]] = None

    # -- the Channel protocol
    def attach(self, session: Any) -> None:
        self.router.attach(session)
        self.arbiter.add(session)
        self._wakeup()

    def detach(self, session: Any) -> None:
        self.router.detach(session)
        self.arbiter.remove(session)

    def attach_engine(self, engine: Any) -> None:
        """A sender that matches its own exchanges or expects none (a
        broadcaster, osgp.concentrator.broadcast): it gets the frames whose
        APDU codes it ``listens`` for and sends when the arbiter lets it."""
        self.router.listen(engine, engine.listens)
        self.arbiter.add(engine)
        self._wakeup()

    def detach_engine(self, engine: Any) -> None:
        self.router.unlisten(engine)
        self.arbiter.remove(engine)

    def emit(self, events: List[Any]) -> None:
        if not events:
            return
        if self.on_events is None:
            self.events += events
            return
        try:
            self.on_events(events)
        except OSGPError as exc:  # e.g. the store refused a commit: the task is lost, not the loop
            self.stats["engine errors"] += 1
            log.warning("%s: engine error: %s", self.name, exc)

    # -- running
    # No task runs per exchange: frames go out from the callback that made
    # room or work for them (a response received, a timer, a write
    # committed), and one timer, at the earliest deadline, calls the
    # sessions' timeouts.
    async def run(self) -> None:
        """Move frames until :meth:`close` (or the transport fails)."""
        self.transport.set_receiver(self._received, self._pump)
        try:
            self._pump()
            await self._done
        finally:
            self.transport.set_receiver(None)
            if self._timer is not None:
                self._timer.cancel()

    def _wakeup(self) -> None:
        """A session has something new to send (the arbiter's ``on_dirty``):
        pump once the current callback ends (at once when it is one of this
        channel's own, which pump as they end)."""
        if self._inside or self._pump_soon or self._closed:
            return
        self._pump_soon = True
        self._loop.call_soon(self._pump)

    def _pump(self) -> None:
        """Send what the arbiter gives while the medium has room, then set
        the timer for the earliest deadline."""
        self._pump_soon = False
        self._now = None  # the next frames are another batch
        if self._closed or self._slow:
            return
        self._inside = True
        arbiter, transport, stats = self.arbiter, self.transport, self.stats
        arbiter.on_dirty = None  # what the polls change is looked at by the next poll
        try:
            now = self._loop.time()
            while True:
                picked = arbiter.poll_transmit(now)
                if arbiter.has_events:
                    self.emit(arbiter.take_events())
                if picked is None:
                    break
                frame = picked[1]
                try:
                    if not transport.send_nowait(frame):
                        self._slow = True  # wait for the transport, then go on
                        asyncio.ensure_future(self._send_slow(frame))
                        return
                except TransportClosed:
                    self._stop()
                    return
                except TransportError as exc:  # the response timer decides what it means
                    stats["send errors"] += 1
                    log.debug("%s: send failed: %s", self.name, exc)
                stats["frames sent"] += 1
                if self.tap is not None:
                    self.tap("tx", frame)
        finally:
            self._inside = False
            arbiter.on_dirty = self._wakeup
        d = arbiter.next_deadline()
        if d is not None and (self._timer is None or d < self._timer_at):
            if self._timer is not None:
                self._timer.cancel()
            # a deadline that moves later leaves this timer early: it then
            # finds nothing due and sets the next one
            self._timer, self._timer_at = self._loop.call_at(d, self._on_timer), d

    async def _send_slow(self, frame: bytes) -> None:
        try:
            await self.transport.send(frame)
        except TransportClosed:
            self._stop()
            return
        except TransportError as exc:
            self.stats["send errors"] += 1
            log.debug("%s: send failed: %s", self.name, exc)
        self.stats["frames sent"] += 1
        if self.tap is not None:
            self.tap("tx", frame)
        self._slow = False
        self._pump()

    def _on_timer(self) -> None:
        self._timer = None
        self._inside = True
        try:
            self.emit(self.arbiter.handle_timeout(self._loop.time()))
        finally:
            self._inside = False
        self._pump()

    def _received(self, frame: bytes) -> None:
        """Route one LPDU from the transport (called in the loop's thread);
        once the frames that arrived together are routed, the transport calls
        :meth:`_pump` to send what they made room or work for."""
        self.stats["frames received"] += 1
        if self.tap is not None:
            self.tap("rx", frame)
        self._inside = True
        try:
            session = self.router.route(frame)
            if session is not None:
                now = self._now  # one reading of the clock for the frames of one wake-up
                if now is None:
                    now = self._now = self._loop.time()
                self.emit(session.receive_data(frame, now))
        except Exception as exc:  # noqa: BLE001 - nothing a peer sends may stop the channel
            self.stats["rejected frames"] += 1
            log.debug("%s: frame %s rejected: %r", self.name, frame.hex(), exc)
        finally:
            self._inside = False

    def _stop(self) -> None:
        self._closed = True
        if not self._done.done():
            self._done.set_result(None)

    async def close(self) -> None:
        self._stop()
        await self.transport.close()


def plc_profile(response_ms: int, retries: Optional[int] = None) -> LinkProfile:
    """The PLC profile with another response timer (and number of resends)."""
    t = PLC.timers
    return replace(
        PLC,
        timers=replace(
            t, response_ms=response_ms, retries=t.retries if retries is None else retries
        ),
    )


async def open_channel(
    name: str,
    url: str,
    concentrator: lon.SubnetNode = CONCENTRATOR,
    *,
    max_outstanding: int = 1,
    profile: Optional[LinkProfile] = None,
    timeout: float = 5.0,
) -> AsyncChannel:
    """An :class:`AsyncChannel` on the transport of ``url`` (``udp://host:port``
    for CN/IP; any URL :func:`osgp.transport.aio.open_transport` opens)."""
    transport = await open_transport(url, timeout=timeout)
    return AsyncChannel(
        name, transport, concentrator, max_outstanding=max_outstanding, profile=profile
    )


def commission(store: Any, segment: str, meters: Sequence[Dict[str, Any]]) -> List[int]:
    """Put commissioned meters into ``store`` on ``segment``, each a mapping
    with ``neuron_id`` (hex), ``subnet``, ``node``, ``key`` (hex, the 12-byte
    OMA key) and optionally ``serial`` and ``path`` (repeaters as [subnet,
    node] pairs); returns their device ids.  Meters already there keep their
    readings."""
    ids = []
    for m in meters:
        d = store.upsert_device(
            bytes.fromhex(m["neuron_id"]),
            serial=m.get("serial"),
            segment=segment,
            subnet=int(m["subnet"]),
            node=int(m["node"]),
        )
        store.put_key(d, KEY_PURPOSE, bytes.fromhex(m["key"]))
        store.put_routes(d, [([tuple(p) for p in m.get("path", [])], 1.0)])
        ids.append(d)
    return ids


async def run_collection(
    store: Any,
    channels: Dict[str, str],
    *,
    rounds: int = 1,
    interval_s: float = 0.0,
    policy: StatusPolicy = QUICK_RETRIES,
    max_outstanding: int = 1,
    profile: Optional[LinkProfile] = None,
    registers: bool = True,
    load_profile: bool = True,
    events: bool = True,
    self_reads: bool = True,
    present: bool = False,
    on_engine: Optional[Callable[[Concentrator], None]] = None,
    keep_frames: bool = False,
    write_batch_s: Optional[float] = WRITE_BATCH_S,
) -> List[Round]:
    """Collect from every commissioned meter of the segments in ``channels``
    (segment name -> transport URL): ``rounds`` rounds, ``interval_s`` apart
    (from one round's end to the next one's start).  ``keep_frames``: every
    frame also goes to the store's raw-frame table
    (:class:`~osgp.concentrator.rawframes.FrameKeeper`).  ``write_batch_s``:
    the readings committed within that time share one transaction (each
    meter is told, BP05, only after it; None: one transaction each).
    Returns the rounds."""
    runtime = AsyncRuntime()
    eng = Concentrator(store, runtime, policy=policy, write_batch_s=write_batch_s)
    opened: List[AsyncChannel] = []
    tasks: List[asyncio.Future] = []
    try:
        await attach_channels(eng, channels, opened, tasks, max_outstanding, profile)
        for ch in opened if keep_frames else ():
            ch.tap = FrameKeeper(store, ch.name, crc=ch.crc)
        if on_engine is not None:
            on_engine(eng)
        done: asyncio.Queue = asyncio.Queue()
        col = Collector(
            eng,
            registers=registers,
            load_profile=load_profile,
            events=events,
            self_reads=self_reads,
            present=present,
            on_round_done=done.put_nowait,
        )
        for i in range(rounds):
            if i and interval_s:
                await asyncio.sleep(interval_s)
            r = col.start_round(f"round {i + 1}")
            while True:
                finished = await _first(done.get(), tasks)
                if finished is r:
                    break
        return col.rounds
    finally:
        # the sessions' sequence numbers and PSNs as they are now (a collection
        # saves them with its readings, before its last BP05)
        eng.flush()  # what the last batch has not committed yet
        with store.batch():
            for m in eng.meters.values():
                if m.session is not None and not m.busy:
                    store.set_cursor(m.device_id, *eng.save_session(m))
        await close_channels(opened, tasks)
        for ch in opened:
            if isinstance(ch.tap, FrameKeeper):
                ch.tap.flush()


async def attach_channels(
    eng: Concentrator,
    channels: Dict[str, str],
    opened: List[AsyncChannel],
    tasks: List[asyncio.Future],
    max_outstanding: int = 1,
    profile: Optional[LinkProfile] = None,
) -> None:
    """Open the channel of each segment in ``channels`` (name -> transport
    URL), add its commissioned meters to ``eng`` and start it; the channels
    go to ``opened``, their running tasks to ``tasks`` (for
    :func:`close_channels`, also after a failure half way)."""
    for name, url in channels.items():
        ch = await open_channel(name, url, max_outstanding=max_outstanding, profile=profile)
        opened.append(ch)
        eng.add_channel(ch)
        eng.add_meters(ch)
        tasks.append(asyncio.ensure_future(ch.run()))


async def close_channels(opened: List[AsyncChannel], tasks: List[asyncio.Future]) -> None:
    """Close what :func:`attach_channels` opened and wait for the channel tasks."""
    for ch in opened:
        await ch.close()
    for t in tasks:
        try:
            await t
        except Exception as exc:  # noqa: BLE001 - reported, the caller's result is what counts
            log.warning("channel task ended with %r", exc)


async def _first(aw: Any, tasks: List[asyncio.Future]) -> Any:
    """The result of ``aw``, unless a channel task ends first (then its error)."""
    fut = asyncio.ensure_future(aw)
    await asyncio.wait([fut, *tasks], return_when=asyncio.FIRST_COMPLETED)
    if fut.done():
        return fut.result()
    fut.cancel()
    for t in tasks:
        if t.done():
            t.result()  # raises what ended it
    raise OSGPError("a channel stopped before the round ended")


# -- command line ---------------------------------------------------------------------------
def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m osgp.concentrator.aio --store URL --channel NAME=URL ...``:
    run collection rounds and print one line per round."""
    from osgp.concentrator import KeyVault, Store

    p = argparse.ArgumentParser(
        prog="python -m osgp.concentrator.aio", description="collect from meters over CN/IP"
    )
    p.add_argument("--store", required=True, help="SQLAlchemy URL of the store")
    p.add_argument(
        "--channel",
        action="append",
        required=True,
        metavar="NAME=URL",
        help="segment name and its transport URL (repeatable)",
    )
    p.add_argument(
        "--key-env",
        default="OSGP_MASTER_KEY",
        help="environment variable holding the store's master key as hex",
    )
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--interval", type=float, default=0.0, help="seconds between rounds")
    p.add_argument("--retry", type=float, default=1.0, help="seconds before a retry")
    p.add_argument("--attempts", type=int, default=4, help="attempts per meter and round")
    p.add_argument(
        "--response-ms",
        type=int,
        default=None,
        help="response timer of the sessions (default: the PLC profile's)",
    )
    p.add_argument("--max-outstanding", type=int, default=1, help="exchanges at once a channel")
    args = p.parse_args(argv)
    channels = {}
    for spec in args.channel:
        name, sep, url = spec.partition("=")
        if not sep:
            p.error(f"--channel {spec!r}: NAME=URL")
        channels[name] = url
    try:
        store = Store(args.store, vault=KeyVault.from_env(args.key_env))
        rounds = asyncio.run(
            run_collection(
                store,
                channels,
                rounds=args.rounds,
                interval_s=args.interval,
                policy=StatusPolicy(attempts=args.attempts, retry_s=args.retry),
                max_outstanding=args.max_outstanding,
                profile=None if args.response_ms is None else plc_profile(args.response_ms),
            )
        )
    except OSGPError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for r in rounds:
        print(
            f"{r.name}: {r.ok} ok, {r.failed} failed, {r.retries} retries, stored {dict(r.stored)}",
            flush=True,
        )
    store.close()
    return 0 if all(r.failed == 0 for r in rounds) else 3


if __name__ == "__main__":
    sys.exit(main())
