"""Session-layer benchmarks.

* session-route: frames routed per second by the router of a shared medium
  with 1,000 sessions waiting (one response for each, plus the cross-talk a
  power line carries: requests of other nodes, responses to another
  concentrator, duplicates).  The batch form (one native header parse per
  batch) against the per-frame form and against a router written over
  ``lon.decode_lpdu``, the obvious alternative.  Goal: >= 1 million frames/s.
* session-transaction-*: one complete transaction through the public session
  API (``read`` -> ``poll_transmit`` -> ``receive_data`` -> result) per link and
  suite, against the same exchange through the direct codecs.  Goal <= 10 us.

    python -m pytest benches/bench_session.py --benchmark-only
"""

from __future__ import annotations

import random

import pytest

from osgp.link import lon, mep
from osgp.link.carrier import MepCarrier, MepDeviceCarrier, PlcCarrier, PlcDeviceCarrier
from osgp.security.aes_suite import MEP_AES_ENVELOPE, PLC_AES_ENVELOPE, AesPskSuite
from osgp.security.suite import MEP_ENVELOPE, PLC_ENVELOPE, LegacySuite
from osgp.services import messages as m
from osgp.session import ClientSession, DeviceSession, Router

OWN = lon.SubnetNode(1, 1)
N_SESSIONS = 1000


def _fleet():
    router = Router(OWN)
    sessions, frames = [], []
    rng = random.Random(5)
    for i in range(N_SESSIONS):
        addr = lon.SubnetNode(2 + i // 100, 1 + i % 100)
        key = bytes([i & 0xFF, i >> 8]) * 6
        c = ClientSession(PlcCarrier(addr), LegacySuite(key, PLC_ENVELOPE))
        d = DeviceSession(
            PlcDeviceCarrier([addr]), LegacySuite(key, PLC_ENVELOPE), tables={52: bytearray(7)}
        )
        router.attach(c)
        c.read(52)
        req = c.poll_transmit(0.0)
        d.receive_data(req)
        resp = d.poll_transmit()
        sessions.append(c)
        frames.append(resp)
        frames.append(req)  # heard on the medium too: not a response
        n = lon.decode_lpdu(resp).npdu
        foreign = lon.Npdu(n.src_subnet, n.src_node, lon.SubnetNode(9, 1), n.pdu, n.domain)
        frames.append(lon.encode_lpdu(lon.Lpdu(foreign)))  # to another concentrator
        if rng.random() < 0.3:
            frames.append(resp)  # a duplicate
    expect = [(s, s.carrier.expected) for s in sessions]
    return router, sessions, frames, expect


ROUTER, SESSIONS, FRAMES, EXPECT = _fleet()


def _rearm():
    """Every session waits again for its response (the state after the
    requests went out), so each round routes the same traffic."""
    ROUTER._recent.clear()
    for s, exp in EXPECT:
        s.carrier.expected = exp
        ROUTER._waiting[exp[0] << 4 | exp[1]] = s


def _check(pairs):
    assert len(pairs) == N_SESSIONS


def naive_route(frames):
    """A router over the full decoder: decode_lpdu per frame, then a dict."""
    out = []
    waiting = ROUTER._waiting
    for f in frames:
        try:
            n = lon.decode_lpdu(f).npdu
        except Exception:  # noqa: BLE001
            continue
        p = n.pdu
        if not isinstance(p, lon.Spdu) or p.type != lon.SPDU_RESPONSE or n.dest != OWN:
            continue
        key = ((n.src_subnet << 7) | (n.src_node & 0x7F)) << 4 | p.trans
        s = waiting.pop(key, None)
        if s is not None:
            out.append((s, f))
    return out


@pytest.mark.benchmark(group="session-route")
def test_route_batch(benchmark):
    benchmark.extra_info["frames"] = len(FRAMES)
    pairs = benchmark.pedantic(ROUTER.route_batch, (FRAMES,), setup=_rearm, rounds=30)
    _check(pairs)


@pytest.mark.benchmark(group="session-route")
def test_route_per_frame(benchmark):
    route = ROUTER.route

    def run():
        return [r for r in map(route, FRAMES) if r is not None]

    benchmark.extra_info["frames"] = len(FRAMES)
    got = benchmark.pedantic(run, setup=_rearm, rounds=30)
    assert len(got) == N_SESSIONS


@pytest.mark.benchmark(group="session-route")
def test_route_naive_decode_lpdu(benchmark):
    benchmark.extra_info["frames"] = len(FRAMES)
    got = benchmark.pedantic(naive_route, (FRAMES,), setup=_rearm, rounds=10)
    _check(got)


# -- one transaction through the public session API ---------------------------------------
KEY = bytes([1]) * 16
OMAK = bytes.fromhex("dfdfdfdfdfdfdfdfdfdfdfdf")
PK = bytes(range(0x40, 0x50))
NID = bytes.fromhex("04a1b2c3d4e5")
DATA = bytes(range(44))
TABLES = {0x17: bytearray(DATA)}


def _prepare(client, device):
    """One exchange done once, to keep its response; the bench then replays
    the client side with the counters rewound so the same response is fresh."""
    client.read(0x17, 0, 44)
    req = client.poll_transmit(0.0)
    device.receive_data(req)
    resp = device.poll_transmit()
    client.receive_data(resp)
    return resp


def _legacy(link):
    if link == "mep":
        c = ClientSession(MepCarrier(), LegacySuite(KEY, MEP_ENVELOPE), seq=100)
        d = DeviceSession(
            MepDeviceCarrier(), LegacySuite(KEY, MEP_ENVELOPE), tables=TABLES, seq=100
        )
    else:
        c = ClientSession(
            PlcCarrier(lon.SubnetNode(3, 17)), LegacySuite(OMAK, PLC_ENVELOPE), seq=100
        )
        d = DeviceSession(
            PlcDeviceCarrier([lon.SubnetNode(3, 17)]),
            LegacySuite(OMAK, PLC_ENVELOPE),
            tables=TABLES,
            seq=100,
        )
    resp = _prepare(c, d)

    def rewind():
        c.counter.last = 100
        if link == "plc":
            c.carrier._trans = 0

    return c, resp, rewind


def _aes(link):
    env = MEP_AES_ENVELOPE if link == "mep" else PLC_AES_ENVELOPE
    cs = AesPskSuite(PK, NID, role="concentrator", envelope=env)
    ds = AesPskSuite(PK, NID, role="device", envelope=env)
    if link == "mep":
        c = ClientSession(MepCarrier(), cs)
        d = DeviceSession(MepDeviceCarrier(), ds, tables=TABLES)
    else:
        c = ClientSession(PlcCarrier(lon.SubnetNode(3, 17)), cs)
        d = DeviceSession(PlcDeviceCarrier([lon.SubnetNode(3, 17)]), ds, tables=TABLES)
    resp = _prepare(c, d)
    ctx = cs.ctx

    def rewind():
        ctx.send_seq = 0
        ctx.window.highest = -1
        ctx.window.bits = 0
        ctx.usage.count = 0
        if link == "plc":
            c.carrier._trans = 0

    return c, resp, rewind


def _transaction(client, resp, rewind):
    clock = [0.0]

    def run():
        rewind()
        clock[0] += 1.0
        op = client.read(0x17, 0, 44)
        client.poll_transmit(clock[0])
        client.receive_data(resp, clock[0])
        return op.result

    return run


@pytest.mark.parametrize("link", ["mep", "plc"])
@pytest.mark.benchmark(group="session-transaction")
def test_session_transaction_legacy(benchmark, link):
    assert benchmark(_transaction(*_legacy(link))) == DATA


@pytest.mark.parametrize("link", ["mep", "plc"])
@pytest.mark.benchmark(group="session-transaction")
def test_session_transaction_aes(benchmark, link):
    assert benchmark(_transaction(*_aes(link))) == DATA


READ = m.PartialRead(0x17, 0, 44)
MEP_RESP = _legacy("mep")[1]


def codec_transaction():
    # the same MEP exchange through the direct codecs (no session)
    req = mep.encode_request(KEY, READ.encode(), 101)
    apdu = mep.decode_response(KEY, req, MEP_RESP)
    return m.check_response(m.decode_response(apdu, READ))


@pytest.mark.benchmark(group="session-transaction")
def test_codec_transaction_mep(benchmark):
    assert benchmark(codec_transaction) == DATA
