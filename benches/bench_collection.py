"""Collection on the simulated power-line network: channel efficiency.

Group "collection-channel": a virtual day of collection (the noon and the
after-midnight rounds of ``osgp demo``: registers, load profile, history
log, BP05) of a 250-meter segment that discovery and commissioning set up
first (not timed).  The baseline is the channel itself: the channel-bound
optimum is the airtime of the distinct frames the collection sent, each
counted once, at the simulated bit rate; ``efficiency`` = optimum / the time
the segment's meters took (goal: at least 0.8).  ``extra_info`` also carries
the host CPU per completed exchange of the whole simulation (meters and
network included) and the retries."""

from __future__ import annotations

import time

import pytest

from osgp.demo import DemoConfig, run_demo


@pytest.mark.benchmark(group="collection-channel")
def test_collection_channel_efficiency(benchmark, tmp_path):
    def day():
        t0 = time.process_time()
        res = run_demo(
            DemoConfig(meters=250, segments=1, seed=2, out=tmp_path, plots=False), show=False
        )
        return res, time.process_time() - t0

    res, cpu = benchmark.pedantic(day, rounds=1, iterations=1)
    (seg,) = res.channel.values()
    assert res.commissioned == 250 and all(r.ok == r.meters for r in res.rounds[:2])
    benchmark.extra_info.update(
        efficiency=round(seg["efficiency"], 3),
        airtime_s=round(seg["airtime_s"], 1),
        optimum_s=round(seg["needed_s"], 1),
        collection_s=round(seg["collection_s"], 1),
        exchanges=res.exchanges,
        retries=sum(r.retries for r in res.rounds),
        collect_cpu_per_exchange_us=round(res.cpu_s["collect"] / max(res.exchanges, 1) * 1e6, 1),
    )
    print("\ncollection-channel", benchmark.extra_info)
