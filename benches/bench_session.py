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


ROUNDS, WARMUP = 20_000, 2_000


def _legacy(link):
    """(client, device) of one link with the legacy suite."""
    if link == "mep":
        return (
            ClientSession(MepCarrier(), LegacySuite(KEY, MEP_ENVELOPE), seq=100),
            DeviceSession(
                MepDeviceCarrier(), LegacySuite(KEY, MEP_ENVELOPE), tables=TABLES, seq=100
            ),
        )
    return (
        ClientSession(PlcCarrier(lon.SubnetNode(3, 17)), LegacySuite(OMAK, PLC_ENVELOPE), seq=100),
        DeviceSession(
            PlcDeviceCarrier([lon.SubnetNode(3, 17)]),
            LegacySuite(OMAK, PLC_ENVELOPE),
            tables=TABLES,
            seq=100,
        ),
    )


def _aes(link):
    """(client, device) of one link with OSGP-AES-128-PSK."""
    env = MEP_AES_ENVELOPE if link == "mep" else PLC_AES_ENVELOPE
    cs = AesPskSuite(PK, NID, role="concentrator", envelope=env)
    ds = AesPskSuite(PK, NID, role="device", envelope=env)
    if link == "mep":
        return ClientSession(MepCarrier(), cs), DeviceSession(MepDeviceCarrier(), ds, tables=TABLES)
    return (
        ClientSession(PlcCarrier(lon.SubnetNode(3, 17)), cs),
        DeviceSession(PlcDeviceCarrier([lon.SubnetNode(3, 17)]), ds, tables=TABLES),
    )


def _responses(pair, n):
    """The device's responses to the first ``n`` reads of a fresh client."""
    client, device = pair
    out = []
    for i in range(n):
        op = client.read(0x17, 0, 44)
        device.receive_data(client.poll_transmit(float(i)))
        resp = device.poll_transmit()
        client.receive_data(resp, float(i))
        assert op.result == DATA
        out.append(resp)
    return out


def _run_transactions(benchmark, make):
    """Times one transaction of a session as it runs in service: each read
    takes the next sequence (and transaction) number and the replay window
    moves.  The device's responses come from a twin pair run beforehand, so
    only the client's work is timed."""
    n = 1 if benchmark.disabled else WARMUP + ROUNDS
    responses = iter(_responses(make(), n))
    client = make()[0]
    clock = [0.0]

    def transaction():
        now = clock[0]
        clock[0] = now + 1.0
        op = client.read(0x17, 0, 44)
        client.poll_transmit(now)
        client.receive_data(next(responses), now)
        return op.result

    return benchmark.pedantic(transaction, rounds=ROUNDS, warmup_rounds=WARMUP)


@pytest.mark.parametrize("link", ["mep", "plc"])
@pytest.mark.benchmark(group="session-transaction")
def test_session_transaction_legacy(benchmark, link):
    assert _run_transactions(benchmark, lambda: _legacy(link)) == DATA


@pytest.mark.parametrize("link", ["mep", "plc"])
@pytest.mark.benchmark(group="session-transaction")
def test_session_transaction_aes(benchmark, link):
    assert _run_transactions(benchmark, lambda: _aes(link)) == DATA


READ = m.PartialRead(0x17, 0, 44)
MEP_RESP = _responses(_legacy("mep"), 1)[0]


def codec_transaction():
    # the same MEP exchange through the direct codecs (no session)
    req = mep.encode_request(KEY, READ.encode(), 101)
    apdu = mep.decode_response(KEY, req, MEP_RESP)
    return m.check_response(m.decode_response(apdu, READ))


@pytest.mark.benchmark(group="session-transaction")
def test_codec_transaction_mep(benchmark):
    assert benchmark(codec_transaction) == DATA
