"""``osgp demo``: a simulated fleet discovered, commissioned, collected for a
virtual day, exported and plotted, with no hardware.

Between the noon and midnight rounds the topology is re-evaluated
(:mod:`osgp.concentrator.reevaluation`, scheduled with
:func:`osgp.concentrator.schedule.periodic`); with ``move_meter`` one meter
is first moved to another segment, which the re-evaluation finds and
re-homes before the midnight round reads it there.

The fleet is :mod:`osgp.sim.fleet` (meters on power-line segments, some
beyond direct reach of their concentrator); the concentrator is
:mod:`osgp.concentrator` running on the simulated network's virtual clock,
the same sans-IO sessions and store a real head-end uses.  Everything follows
from the seed.
"""

from __future__ import annotations

import os
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence

import numpy as np

from osgp.concentrator import KeyVault, Store
from osgp.concentrator.engine import KEY_PURPOSE, NORMAL, Concentrator
from osgp.concentrator.export import export
from osgp.concentrator.reevaluation import Reevaluation, Reevaluator
from osgp.concentrator.schedule import Collector, Round, periodic

__all__ = [
    "DemoConfig",
    "DemoResult",
    "Commissioned",
    "run_demo",
    "discover_and_commission",
    "load_fleet",
    "ROUND_HOURS",
]

# collection rounds, hours after midnight of the virtual day: registers and the
# open load-profile block at noon, the closed day with the history log just
# after midnight, then catch-ups of the meters the midnight round missed (one
# an hour while any is missed, to the end of the collection)
ROUND_HOURS = (12.0, 24.05)
CATCH_UP_HOURS = 26.0
CATCH_UP_EVERY_S = 3600.0
MOVE_HOURS = 13.0  # move_meter: a meter hangs on another segment from then
REEVALUATE_HOURS = 14.0  # the first re-evaluation, then every REEVALUATE_EVERY_S
REEVALUATE_EVERY_S = 86400.0
DAY = 86400.0


@dataclass
class DemoConfig:
    meters: int = 1000
    segments: int = 4
    seed: int = 1
    out: Optional[Path] = None
    plots: bool = True
    capture: bool = False
    base_loss: float = 0.01
    loss_free: bool = False  # a medium that loses no frame in reach (MediumProfile.loss_free)
    # re-evaluate the topology between the rounds (at 1,000 meters on 4 segments: 3.3 virtual
    # hours from 14 h, 14 to 18 s more host CPU in the collection, so not by default)
    reevaluate: bool = False
    move_meter: bool = False  # move one meter to another segment before the re-evaluation
    # time exactly one virtual day of the schedule: from the first noon after commissioning
    # (the network run idle and every meter brought to it, untimed) to the next noon, every
    # meter brought to it at the end (its day of interval ends counted whether read or not)
    whole_day: bool = False


@dataclass
class DemoResult:
    out: Path
    meters: int
    found: int = 0
    commissioned: int = 0
    rounds: List[Round] = field(default_factory=list)
    rows: Dict[str, int] = field(default_factory=dict)
    files: Dict[str, List[Path]] = field(default_factory=dict)
    plots: List[Path] = field(default_factory=list)
    channel: Dict[str, Dict[str, float]] = field(default_factory=dict)
    drops: Counter = field(default_factory=Counter)
    cpu_s: Dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0
    collect_wall_s: float = 0.0  # wall time of the virtual day's collection alone
    collect_events: int = 0  # simulation events the collection processed
    collect_virtual_s: float = 0.0  # virtual time the collection covered
    exchanges: int = 0
    fleet: Any = None  # the simulated fleet itself (the truth a test compares with)
    metrics: List[Dict[str, Any]] = field(default_factory=list)  # the store's, per day and segment
    reevaluations: List[Reevaluation] = field(default_factory=list)
    moved: Optional[bytes] = None  # the neuron id move_meter moved


def _default_out() -> Path:
    return Path.cwd() / time.strftime("osgp-demo-%Y%m%d-%H%M%S")


class _Steps:
    """Progress of the long steps (rich when it is installed, else silent)."""

    def __init__(self, show: bool) -> None:
        self.progress: Any = None
        if show:
            try:
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    Progress,
                    TextColumn,
                    TimeElapsedColumn,
                )
            except ImportError:  # pragma: no cover - rich is a dependency
                return
            self.progress = Progress(
                TextColumn("{task.description:<34}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
            )

    def __enter__(self) -> _Steps:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def step(self, name: str, total: float) -> Callable[[float], None]:
        if self.progress is None:
            return lambda done: None
        task = self.progress.add_task(name, total=total)
        return lambda done: self.progress.update(task, completed=done)


def run_demo(cfg: DemoConfig, *, show: bool = True) -> DemoResult:
    """Run the whole demo; returns what the summary prints."""
    from osgp.sim.fleet import FleetSpec, build_fleet
    from osgp.sim.network import MediumProfile

    wall0 = time.perf_counter()
    out = Path(cfg.out) if cfg.out is not None else _default_out()
    out.mkdir(parents=True, exist_ok=True)
    res = DemoResult(out, cfg.meters)
    master = secrets.token_bytes(32)
    key_file = out / "master.key"
    # created owner-only: the key is never readable by others, not even briefly
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a file left by an earlier run keeps its mode otherwise
    with os.fdopen(fd, "w") as fh:
        fh.write(master.hex() + "\n")
    store = Store(f"sqlite:///{out / 'concentrator.db'}", vault=KeyVault(master))
    capture = open(out / "capture.pcapng", "wb") if cfg.capture else None
    try:
        with _Steps(show) as steps:
            t0 = time.process_time()
            fleet = build_fleet(
                FleetSpec(
                    meters=cfg.meters,
                    segments=cfg.segments,
                    seed=cfg.seed,
                    base_loss=cfg.base_loss,
                    profile=MediumProfile(base_loss=cfg.base_loss, loss_free=True)
                    if cfg.loss_free
                    else None,
                    capture=capture,
                )
            )
            res.cpu_s["build fleet"] = time.process_time() - t0
            res.fleet = fleet
            net = fleet.network
            t0 = time.process_time()
            found, commissioned, plans, topologies = discover_and_commission(
                fleet, store, cfg.seed, progress=steps.step
            )
            res.found, res.commissioned = found, commissioned
            res.cpu_s["discover and commission"] = time.process_time() - t0
            if cfg.whole_day:
                _to_noon(net, fleet)
            t0, w0, e0, v0 = time.process_time(), time.perf_counter(), net.processed, net.time()
            eng = Concentrator(store, net)
            load_fleet(eng, fleet, store)
            before = {
                s.name: (s.stats["frames"], s.airtime_s, s.needed_airtime_s, s.needed_frames)
                for s in fleet.segments
            }
            reev = None
            if cfg.reevaluate:
                channels = {seg.name: seg for seg in fleet.segments}
                reev = Reevaluator(eng, channels, plans, topologies)
            if cfg.move_meter and len(fleet.segments) > 1:
                res.moved = _move_one(fleet, topologies, net)
            res.rounds = _collect_day(eng, net, fleet, steps, reev, whole_day=cfg.whole_day)
            res.reevaluations = reev.history if reev is not None else []
            res.cpu_s["collect"] = time.process_time() - t0
            res.collect_wall_s = time.perf_counter() - w0
            res.collect_events = net.processed - e0
            res.collect_virtual_s = net.time() - v0
            res.exchanges = eng.stats["exchanges"]
            res.channel = _channel_use(fleet, res.rounds, before)
            res.metrics = store.metrics().to_pylist()
            for seg in fleet.segments:
                res.drops.update({f"router: {k}": v for k, v in seg.router.drops.items()})
            for m in eng.meters.values():
                if m.session is not None:
                    res.drops.update({f"session: {k}": v for k, v in m.session.drops.items()})
            t0 = time.process_time()
            res.files = export(store, out / "export", ("parquet", "csv"))
            res.rows = {k: _rows(v[0]) for k, v in res.files.items()}
            res.cpu_s["export"] = time.process_time() - t0
            if cfg.plots:
                t0 = time.process_time()
                res.plots = _plots(store, fleet, out)
                res.cpu_s["plots"] = time.process_time() - t0
    finally:
        store.close()
        if capture is not None:
            capture.close()
    res.wall_s = time.perf_counter() - wall0
    return res


def _rows(parquet: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(parquet).metadata.num_rows


def _run_engines(
    net: Any, fleet: Any, engines: List[Any], progress: Callable, count: Callable
) -> None:
    """Run ``engines`` (one per segment) until all are done, reporting progress."""
    for seg, e in zip(fleet.segments, engines):
        seg.attach_engine(e)
    while not all(e.done for e in engines):
        net.run(until=net.time() + 60.0)
        progress(count())
        if not net.pending():
            break
    for seg, e in zip(fleet.segments, engines):
        seg.detach_engine(e)
    for e in engines:
        if e.error is not None:
            raise e.error


class Commissioned(NamedTuple):
    """What :func:`discover_and_commission` did: meters found and commissioned,
    segment name -> its address plan, the topologies discovered."""

    found: int
    commissioned: int
    plans: Dict[str, Any]
    topologies: List[Any]


def _no_progress(name: str, total: float) -> Callable[[float], None]:
    return lambda done: None


def discover_and_commission(
    fleet: Any,
    store: Store,
    seed: int = 0,
    *,
    groups: Sequence[int] = (1,),
    progress: Callable[[str, float], Callable[[float], None]] = _no_progress,
) -> Commissioned:
    """Discovery on every segment of a simulated ``fleet`` (osgp.sim.fleet)
    at once (ATM reconstruction), then commissioning of every meter found
    with an address, a new key drawn from ``seed`` and ``groups``; the
    topology, routes and keys go to ``store``.  ``progress(step, total)``
    returns the callback told how far each step got."""
    from osgp.concentrator.commissioning import Commissioning
    from osgp.concentrator.discovery import AddressPlan, Discovery

    net = fleet.network
    plans = {
        s.name: AddressPlan(fleet.subnets(s.name), reserved=[s.concentrator])
        for s in fleet.segments
    }
    finders = [
        Discovery(s.name, s.concentrator, plans[s.name], expected=len(s.members))
        for s in fleet.segments
    ]
    told = progress("discovering meters (ATM)", len(fleet.meters))
    _run_engines(net, fleet, finders, told, lambda: sum(len(e.nodes) for e in finders))
    topologies = [e.topology for e in finders if e.topology is not None]
    found = sum(len(t.meters) for t in topologies)
    rng = np.random.default_rng(seed)
    keys = {nid: rng.bytes(12) for t in topologies for nid in t.meters}
    workers = [
        Commissioning(t, plans[t.segment], keys, fleet.factory_key, groups=groups)
        for t in topologies
    ]
    told = progress("commissioning", found)
    _run_engines(net, fleet, workers, told, lambda: sum(len(w.results) for w in workers))
    commissioned = 0
    at = net.utc(net.time())
    for t, w in zip(topologies, workers):
        for link in t.links:
            store.put_link(t.segment, link.source or b"", link.nid, link.ssi_out, link.margin)
        for nid, route in t.meters.items():
            outcome = w.results.get(nid)
            address = outcome.address if outcome is not None and outcome.ok else None
            ok = address is not None
            dev = store.upsert_device(
                nid,
                serial=route.serial,
                segment=t.segment,
                subnet=address.subnet if address is not None else None,
                node=address.node if address is not None else None,
                status=NORMAL if ok else "not_commissioned",
                meta={"hops": route.hops, "ssi": route.ssi, "margin": route.margin},
            )
            if not ok:
                store.audit(
                    at, "demo", "commissioning failed", outcome.status if outcome else "", dev
                )
                continue
            store.put_key(dev, KEY_PURPOSE, keys[nid])
            paths = [route.path] + list(route.alternates)
            store.put_routes(
                dev,
                [
                    ([(t.proxies[n].subnet, t.proxies[n].node) for n in path], 1.0 / (1 + i))
                    for i, path in enumerate(paths)
                    if all(n in t.proxies for n in path)
                ],
            )
            commissioned += 1
    return Commissioned(found, commissioned, plans, topologies)


def load_fleet(eng: Concentrator, fleet: Any, store: Store) -> Dict[int, Any]:
    """Put the segments of ``fleet`` on ``eng`` as channels and every meter
    the store has commissioned on its segment; device id -> simulated meter."""
    for seg in fleet.segments:
        eng.add_channel(seg)
    sims = {}
    for dev in store.devices():
        if dev.subnet is not None and dev.segment and dev.status == NORMAL:
            eng.add_meter(dev.id, fleet.segment(dev.segment))
            sims[dev.id] = fleet.meters[dev.neuron_id]
    return sims


def _move_one(fleet: Any, topologies: List[Any], net: Any) -> Optional[bytes]:
    """At MOVE_HOURS, move a meter of the first segment that answers
    directly and relays for no one to the second segment; its neuron id."""
    first, second = fleet.segments[0], fleet.segments[1]
    t = next((t for t in topologies if t.segment == first.name), None)
    if t is None:
        return None
    relays = {p for r in t.meters.values() for p in r.path}
    nid = next((n for n in sorted(t.meters) if not t.meters[n].path and n not in relays), None)
    if nid is None:
        return None
    start = net.time()
    day0 = (int(net.utc(start)) // 86400) * 86400 - net.utc(0)
    net.at(max(start, day0 + MOVE_HOURS * 3600), lambda now: fleet.move(nid, second.name, 150.0))
    return nid


def _to_noon(net: Any, fleet: Any) -> None:
    """Run the network idle to the next noon and every meter up to it."""
    day0 = (int(net.utc(net.time())) // 86400) * 86400 - net.utc(0)
    noon = day0 + ROUND_HOURS[0] * 3600
    if noon < net.time():
        noon += DAY
    net.run(until=noon)
    for m in fleet.meters.values():
        m.advance(noon)


def _collect_day(
    eng: Concentrator,
    net: Any,
    fleet: Any,
    steps: _Steps,
    reev: Optional[Reevaluator] = None,
    *,
    whole_day: bool = False,
) -> List[Round]:
    col = Collector(eng)
    start = net.time()
    day0 = (int(net.utc(start)) // 86400) * 86400 - net.utc(0)  # virtual time of midnight
    for h in ROUND_HOURS:
        net.at(max(start, day0 + h * 3600), lambda now, h=h: col.start_round(f"{h:g} h"))
    stop: Optional[Callable[[], None]] = None
    if reev is not None:
        first = max(start, day0 + REEVALUATE_HOURS * 3600)
        stop = periodic(net, REEVALUATE_EVERY_S, reev.start, first=first)

    end = start + DAY if whole_day else day0 + CATCH_UP_HOURS * 3600 + 4 * 3600

    def catch_up(now: float) -> None:
        if col.rounds:  # the last round's misses, once its last retry is over, again and again
            col.catch_up(col.rounds[-1], every_s=CATCH_UP_EVERY_S, until=end)

    net.at(day0 + CATCH_UP_HOURS * 3600, catch_up)
    progress = steps.step("collecting a virtual day (hours)", (end - start) / 3600)
    t = start
    while t < end:
        t = min(end, t + 900)
        net.run(until=t)
        progress((t - start) / 3600)
        idle = reev is None or not reev.running
        done = net.time() > day0 + CATCH_UP_HOURS * 3600 and col.idle
        if done and idle and not whole_day:
            break
    if stop is not None:
        stop()
    if whole_day:  # the day's interval ends of every meter, read since or not
        for m in fleet.meters.values():
            m.advance(end)
    return col.rounds


def _channel_use(
    fleet: Any, rounds: List[Round], before: Dict[str, tuple]
) -> Dict[str, Dict[str, float]]:
    """Per segment: frames, airtime, the time its meters took in the rounds,
    and the channel-bound optimum: the airtime of the distinct frames sent,
    each counted once (a retry or a repeater's repeat of the same bytes is
    not needed), at the simulated bit rate.  ``efficiency_with_gaps`` also
    counts the inter-frame gap the medium makes every needed frame wait."""
    out: Dict[str, Dict[str, float]] = {}
    for seg in fleet.segments:
        span = sum(r.spans.get(seg.name, 0.0) for r in rounds)
        frames0, air0, needed0, nframes0 = before[seg.name]
        needed = seg.needed_airtime_s - needed0
        gaps = (seg.needed_frames - nframes0) * seg.profile.gap_s
        out[seg.name] = {
            "frames": float(seg.stats["frames"] - frames0),
            "airtime_s": seg.airtime_s - air0,
            "needed_s": needed,
            "collection_s": span,
            "efficiency": needed / span if span else 0.0,
            "efficiency_with_gaps": (needed + gaps) / span if span else 0.0,
        }
    return out


def _plots(store: Store, fleet: Any, out: Path) -> List[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    iv = store.intervals()
    if iv.num_rows:
        dev = iv.column("device_id").to_numpy()
        first = int(dev[0])
        mask = dev == first
        ts = iv.column("ts_utc").cast("int64").to_numpy()[mask]
        ch = iv.column("channel").to_numpy()[mask]
        val = iv.column("value").to_numpy()[mask]
        fig, ax = plt.subplots(figsize=(9, 3.5))
        for c, unit in ((0, "Wh"), (1, "varh")):
            sel = ch == c
            if sel.any():
                order = np.argsort(ts[sel])
                t = (ts[sel][order] - ts[sel][order][0]) / 3600.0
                ax.step(t, val[sel][order], where="post", label=f"channel {c} ({unit})")
        d = store.device(first)
        ax.set_title(f"Load profile of {d.serial} (15-minute intervals)")
        ax.set_xlabel("hours since the first interval")
        ax.set_ylabel("energy per interval")
        ax.legend()
        fig.tight_layout()
        p = out / "load_profile.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)
        # daily consumption across the fleet (active energy, channel 0)
        sel = iv.column("channel").to_numpy() == 0
        energy = np.bincount(dev[sel], weights=iv.column("value").to_numpy()[sel])
        per = energy[energy > 0] / 1000.0
        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.hist(per, bins=40)
        ax.set_title(f"Energy collected per meter ({len(per)} meters)")
        ax.set_xlabel("kWh")
        ax.set_ylabel("meters")
        fig.tight_layout()
        p = out / "fleet_consumption.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)
    paths.append(_plot_topology(store, fleet, out, plt))
    return paths


def _plot_topology(store: Store, fleet: Any, out: Path, plt: Any) -> Path:
    from matplotlib.colors import BoundaryNorm
    from matplotlib.ticker import MaxNLocator

    segs = fleet.segments
    placed = []  # per segment: (positions in m, hop counts; -1 without a route)
    for seg in segs:
        pos = {n: p.position_m for n, p in fleet.placement.items() if p.segment == seg.name}
        hops_of = {}
        for dev in store.devices(segment=seg.name):
            routes = store.routes(dev.id)
            hops_of[dev.neuron_id] = len(routes[0].path) if routes else -1
        placed.append(
            (np.array(list(pos.values())), np.array([hops_of.get(n, -1) for n in pos], dtype=int))
        )
    top = max([int(h.max()) for _, h in placed if h.size] + [0])
    # one colour per hop count, the same in every panel
    norm = BoundaryNorm(np.arange(-0.5, top + 1.5), plt.get_cmap("viridis").N)
    fig, axes = plt.subplots(
        len(segs),
        1,
        figsize=(9, 1.8 * len(segs) + 0.8),
        squeeze=False,
        sharex=True,
        constrained_layout=True,
    )
    sc = None
    for ax, seg, (xs, hs) in zip(axes[:, 0], segs, placed):
        routed = hs >= 0
        sc = ax.scatter(xs[routed], hs[routed], c=hs[routed], cmap="viridis", norm=norm, s=8)
        if (~routed).any():
            ax.scatter(xs[~routed], hs[~routed], marker="x", color="grey", s=12, label="no route")
        ax.scatter([0], [0], marker="s", color="red", s=40, label="concentrator")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("hops")
        ax.set_title(f"{seg.name}: meters by distance and repeater hops", fontsize=9)
    axes[0, 0].legend(loc="upper left", fontsize=8)
    axes[-1, 0].set_xlabel("distance from the concentrator along the feeder (m)")
    if sc is not None:
        bar = fig.colorbar(sc, ax=axes[:, 0].tolist(), label="hops", ticks=range(top + 1))
        bar.ax.tick_params(labelsize=8)
    p = out / "topology.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return p


_TRAFFIC = ("router: not a response", "router: not for us")


def summary(res: DemoResult) -> str:
    rate = [r.success_rate for r in res.rounds]
    lines = [
        f"osgp demo: {res.meters} simulated meters, results in {res.out}",
        f"  discovered {res.found}, commissioned {res.commissioned}",
    ]
    for r in res.rounds:
        lines.append(
            f"  round {r.name:>7}: {r.ok}/{r.meters} read, {r.retries} retries, "
            f"{r.stored['intervals']} intervals, {r.stored['registers']} register values, "
            f"{r.stored['events']} events, {(r.finished or r.started) - r.started:.0f} s on air"
        )
    if rate:
        lines.append(f"  read rate: {min(rate):.1%} (worst round) .. {max(rate):.1%}")
    if res.moved is not None:
        lines.append(f"  moved to another segment at {MOVE_HOURS:g} h: meter {res.moved.hex()}")
    for ev in res.reevaluations:
        found = Counter(c.reason for c in ev.changes)
        lines.append(
            f"  re-evaluation: {found['moved']} moved ({len(ev.moved)} re-homed, "
            f"{len(ev.failed)} not commissioned there), {found['path']} new path "
            f"({len(ev.rerouted)} re-routed), {found['lost']} lost, "
            f"{(ev.finished or ev.started) - ev.started:.0f} s"
        )
    for name, c in res.channel.items():
        lines.append(
            f"  {name}: {c['frames']:.0f} frames, {c['airtime_s']:.0f} s airtime, "
            f"{c['collection_s']:.0f} s collecting, efficiency {c['efficiency']:.0%} "
            "of the channel-bound optimum"
        )
    for m in res.metrics:
        ok, bad = m.get("reads_ok", 0), m.get("reads_failed", 0)
        lines.append(
            f"  {m['day']} {m['segment']}: read success {ok / max(ok + bad, 1):.1%}, "
            f"{m.get('retries', 0):.0f} retries, {m.get('route_changes', 0):.0f} route changes, "
            f"channel occupied {m.get('airtime_s', 0) / max(m.get('collection_s', 0), 1e-9):.0%} "
            "of the collection time"
        )
    lines.append("  rows stored: " + ", ".join(f"{k} {v}" for k, v in res.rows.items()))
    # on a shared medium a router sees every request and every answer to
    # other nodes: that is traffic, not a rejection
    traffic = {k: v for k, v in res.drops.items() if k in _TRAFFIC}
    rejected = Counter({k: v for k, v in res.drops.items() if k not in _TRAFFIC})
    lines.append(
        f"  frames rejected: {sum(rejected.values())}"
        + (
            " (" + ", ".join(f"{k} {v}" for k, v in rejected.most_common(4)) + ")"
            if rejected
            else ""
        )
        + f"; other nodes' traffic ignored: {sum(traffic.values())}"
    )
    lines.append(
        "  host CPU: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in res.cpu_s.items())
        + f"; wall {res.wall_s:.1f} s"
    )
    for p in res.plots:
        lines.append(f"  plot: {p}")
    for kind, paths in res.files.items():
        lines.append(f"  {kind}: " + ", ".join(str(p) for p in paths))
    return "\n".join(lines)
