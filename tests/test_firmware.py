"""Secure group broadcasts and firmware download on the simulated feeder:
every effect checked on the simulated meters (their code banks, BT01,
ET04 / ET54 broadcast fields, history log), every outcome on the store."""

from __future__ import annotations

import random
import struct

import pytest

from osgp import tables
from osgp.concentrator import Store
from osgp.concentrator.broadcast import Broadcaster
from osgp.concentrator.firmware import BROADCAST_KEY, firmware_params
from osgp.concentrator.operations import Operations
from osgp.errors import AuthenticationError, ConfigurationError, SequenceError
from osgp.security.broadcast import AesBroadcast, BroadcastRange, LegacyBroadcast
from osgp.services import firmware as F
from osgp.sim import layouts as L
from tests.test_concentrator import Feeder

ET = 2048
GROUP = 9
BKEY = bytes(range(12))
NEW = F.version_word(5, 1, 0)
RUN_S = 4 * 3600.0


def feeder(tmp_path, n=4, *, members=None, base_loss=0.0, **kw):
    """A feeder whose meters hold the broadcast key and (``members``: which
    ones, default all) belong to GROUP, as commissioning would leave them."""
    f = Feeder(tmp_path, n=n, base_loss=base_loss, **kw)
    for d, m in f.meters.items():
        m.broadcasts.set_key(BKEY)
        f.store.put_key(d, BROADCAST_KEY, BKEY)
        if members is None or d in members:
            m.groups.append(GROUP)
            m._apply_groups()
    return f


def et04(m):
    return tables.decode(ET + 4, m.image(ET + 4))


def mfg_events(m, name):
    return [h for h in m.history() if h[2] and h[1] == L.MFG_EVENTS[name]]


def recording(b):
    """Keep every frame ``b`` puts on the medium (what an eavesdropper records)."""
    frames = []
    poll = b.poll_transmit

    def rec(now):
        fr = poll(now)
        if fr is not None:
            frames.append(fr)
        return fr

    b.poll_transmit = rec
    return frames


# -- broadcasts ---------------------------------------------------------------------------------
def test_a_broadcast_reaches_the_group_and_no_one_else(tmp_path):
    f = feeder(tmp_path, n=3, members={1, 2})
    b = Broadcaster(f.seg, BKEY)
    b.procedure(GROUP, 34)  # EP34 demand reset
    f.net.run(until=f.net.now + 30)
    assert [m.demand_resets for m in f.meters.values()] == [1, 1, 0]
    outsider = f.meters[3]
    assert outsider.broadcasts.stats["not a member"] == 1
    assert et04(outsider)["BROADCAST_BASE"] == 0
    for d in (1, 2):
        assert et04(f.meters[d])["BROADCAST_BASE"] == 1
        assert et04(f.meters[d])["BROADCAST_RECEIPT"].to_datetime() is not None
    # nothing answered a broadcast: one frame on the medium
    assert f.seg.stats["frames"] == 1


def test_a_replayed_broadcast_is_rejected_and_counted(tmp_path):
    f = feeder(tmp_path, n=2)
    b = Broadcaster(f.seg, BKEY)
    frames = recording(b)
    b.procedure(GROUP, 34)
    b.procedure(GROUP, 34)
    f.net.run(until=f.net.now + 30)
    assert [m.demand_resets for m in f.meters.values()] == [2, 2]
    f.seg.send(None, frames[0])  # the first one again, behind the second
    f.net.run(until=f.net.now + 30)
    for m in f.meters.values():
        assert m.demand_resets == 2
        assert m.broadcasts.range.stats["replay rejected"] == 1
        assert et04(m)["BROADCAST_BASE"] == 2
        # every use of the broadcast key counts, the refused one too (ET54 offset 86)
        assert tables.decode(ET + 54, m.image(ET + 54))["BROADCAST_KEY_USAGE_COUNT"] == 3


def test_repeats_are_served_once_and_a_wrong_key_never(tmp_path):
    f = feeder(tmp_path, n=2)
    b = Broadcaster(f.seg, BKEY)
    b.procedure(GROUP, 34, repeats=2)  # unacknowledged-repeated: three identical frames
    f.net.run(until=f.net.now + 30)
    assert f.seg.stats["frames"] == 3
    assert [m.demand_resets for m in f.meters.values()] == [1, 1]
    assert all(m.broadcasts.range.stats["repeat"] == 2 for m in f.meters.values())
    forger = Broadcaster(f.seg, bytes(12), next_seq=50)
    forger.procedure(GROUP, 34)
    f.net.run(until=f.net.now + 30)
    for m in f.meters.values():
        assert m.demand_resets == 1
        assert m.broadcasts.stats["rejected: AuthenticationError"] == 1
        assert et04(m)["BROADCAST_BASE"] == 1


def test_a_sequence_number_beyond_the_range_is_refused(tmp_path):
    f = feeder(tmp_path, n=1)
    m = f.meters[1]
    m.broadcasts.range.delta = 10
    b = Broadcaster(f.seg, BKEY, next_seq=12)  # B = 0, D = 10: 1..10 only
    b.procedure(GROUP, 34)
    f.net.run(until=f.net.now + 30)
    assert m.demand_resets == 0 and m.broadcasts.range.stats["ahead of range"] == 1
    b.next_seq = 10
    b.procedure(GROUP, 34)
    f.net.run(until=f.net.now + 30)
    assert m.demand_resets == 1 and m.broadcasts.range.base == 10


def test_broadcast_envelopes_round_trip_and_refuse_tampering():
    for env in (LegacyBroadcast(BKEY), AesBroadcast(bytes(16), bytes(6))):
        wire = env.seal(b"\x40\x00\x07payload", 77)
        assert env.sequence(wire) == 77 and env.open(wire) == (b"\x40\x00\x07payload", 77)
        bad = wire[:-1] + bytes([wire[-1] ^ 1])
        with pytest.raises(AuthenticationError):
            env.open(bad)
    r = BroadcastRange(5, 3)
    with pytest.raises(SequenceError):
        r.check(5, b"x")
    with pytest.raises(SequenceError):
        r.check(9, b"x")
    assert r.check(8, b"x") == "accepted"
    with pytest.raises(ConfigurationError):
        Broadcaster(object(), BKEY)


# -- firmware download --------------------------------------------------------------------------
def run(f, ops, job):
    f.net.run(until=f.net.now + RUN_S)
    assert ops.idle
    return {d: o.state for d, o in ops.report(job).items()}


def image(n=64 * 40 + 17, seed=1):
    return random.Random(seed).randbytes(n)


def test_a_download_reaches_every_meter_and_switches_at_the_set_time(tmp_path):
    # meters 5 and 6 are beyond the concentrator's reach: everything by unicast
    f = feeder(tmp_path, n=6, base_loss=0.1)
    img = image()
    at = round(f.net.utc(f.net.now)) + 3000
    ops = Operations(f.eng)
    job = ops.firmware(img, NEW, GROUP, switch_at=at)
    assert set(run(f, ops, job).values()) == {"confirmed"}, ops.report(job)
    packets = -(-len(img) // F.PACKET_SIZE)
    for d, m in f.meters.items():
        assert m.banks.version == NEW, d
        ((t, _, _, arg),) = mfg_events(m, "code bank changed")
        assert struct.unpack("<HH", arg[:4]) == (F.version_word(4, 60, 5), NEW)
        assert t >= at - 1  # the meter's clock said so (within its drift)
        bt01 = tables.decode(1, m.image(1), {"BT00": m.image(0)})
        assert (bt01["FW_VERSION_NUMBER"] << 8) | bt01["FW_REVISION_NUMBER"] == NEW
    near = [m.broadcasts.stats["served"] for m in f.meters.values()][:4]
    assert all(0 < n <= packets for n in near)
    assert f.meters[6].broadcasts.stats["served"] == 0
    assert not f.store.job(job).open


def test_only_missing_packets_are_sent_again_by_unicast(tmp_path):
    f = feeder(tmp_path, n=4, base_loss=0.2)
    calls = {}
    for d, m in f.meters.items():
        calls[d] = []

        def ep09(p, bank=m.banks, log=calls[d]):
            i = struct.unpack_from("<H", p)[0]
            log.append((i, bool(bank.bitmap[i >> 3] >> (i & 7) & 1)))
            return type(bank).ep09(bank, p)

        m.banks.ep09 = ep09
    img = image(64 * 60)
    ops = Operations(f.eng)
    job = ops.firmware(img, NEW, GROUP, repeats=0)
    assert set(run(f, ops, job).values()) == {"confirmed"}, ops.report(job)
    for d, m in f.meters.items():
        served = m.broadcasts.stats["served"]
        assert served < 60, "the lossy medium should have lost some broadcasts"
        unicast = calls[d][served:]
        assert len(unicast) == 60 - served, d  # exactly the missing ones
        assert not any(had for _, had in unicast), d
        assert m.banks.version == NEW


def test_an_image_that_does_not_verify_is_never_switched(tmp_path):
    f = feeder(tmp_path, n=3)
    img = image()
    params = firmware_params(img, NEW, GROUP)
    params["check"] = F.image_check(image(seed=2), F.CHECK_CRC32).hex()  # not this image's
    ops = Operations(f.eng)
    job = ops.submit("firmware", params, None)
    rep = run(f, ops, job)
    assert rep == {1: "failed", 2: "failed", 3: "failed"}
    assert {o.code for o in ops.report(job).values()} == {3}
    for m in f.meters.values():
        assert m.banks.version == F.version_word(4, 60, 5)
        assert not mfg_events(m, "code bank changed")
        assert len(mfg_events(m, "firmware rejected")) == 1
        assert F.CodeBank.decode(m.image(F.ET17)).state == F.REJECTED


def test_an_aes_cmac_image_switches_only_where_the_mac_verifies(tmp_path):
    f = feeder(tmp_path, n=3)
    key = bytes(range(16))
    for d, m in f.meters.items():
        m.banks.key = key if d != 2 else bytes(16)  # meter 2 holds another image key
    ops = Operations(f.eng)
    job = ops.firmware(image(), NEW, GROUP, check_type=F.CHECK_CMAC, key=key)
    assert run(f, ops, job) == {1: "confirmed", 2: "failed", 3: "confirmed"}
    assert [m.banks.version == NEW for m in f.meters.values()] == [True, False, True]


def test_a_meter_already_on_the_image_is_left_alone(tmp_path):
    f = feeder(tmp_path, n=2)
    f.meters[2].banks.version = NEW
    f.meters[2]._gen += 1
    ops = Operations(f.eng)
    job = ops.firmware(image(64 * 8), NEW, GROUP)
    assert run(f, ops, job) == {1: "confirmed", 2: "confirmed"}
    assert f.meters[2].banks.download is None  # never erased
    inv = L.EVENTS["procedure invoked"]
    ran = [struct.unpack_from("<H", a)[0] for _, c, mfg, a in f.meters[2].history() if c == inv]
    assert L.EP08 not in ran


@pytest.mark.parametrize("kill_at", [120.0, 400.0])
def test_a_restarted_concentrator_resumes_without_starting_over(tmp_path, kill_at):
    f = feeder(tmp_path, n=4, base_loss=0.05)
    img = image(64 * 200)
    ops = Operations(f.eng)
    job = ops.firmware(img, NEW, GROUP, switch_at=round(f.net.utc(f.net.now)) + 7200)
    f.net.run(until=f.net.now + kill_at)
    held = {d: m.banks.held for d, m in f.meters.items()}
    assert 0 < max(held.values()) and min(held.values()) < 200, "killed too early or too late"
    answers = {}
    for d, m in f.meters.items():

        def ep08(p, bank=m.banks, d=d):
            answers[d] = r = type(bank).ep08(bank, p)
            return r

        m.banks.ep08 = ep08
    # the process dies: its queued broadcasts and sessions with it
    for b in ops.firmware_runner.broadcasters.values():
        b.close()
    f.store.close()
    f.store = Store(f.url, vault=f.vault)
    f.start()
    ops = Operations(f.eng)
    assert ops.resume() == [job]
    assert set(run(f, ops, job).values()) == {"confirmed"}, ops.report(job)
    for d, m in f.meters.items():
        assert m.banks.version == NEW
        # the second process erased nothing: EP08 found at least what was held
        # (a packet already on the air when the process died still arrives)
        if held[d] < 200:
            code, found = answers[d]
            assert code == 0 and struct.unpack("<H", found)[0] >= held[d], d
        assert len(mfg_events(m, "code bank changed")) == 1
    # and broadcast again only what several meters still missed
    again = sum(b.stats["broadcasts"] for b in ops.firmware_runner.broadcasters.values())
    assert again < 200
    assert not f.store.job(job).open
    assert Operations(f.eng).resume() == []


def test_restarted_after_ep10_the_job_confirms_at_the_switch(tmp_path):
    f = feeder(tmp_path, n=2)
    ops = Operations(f.eng)
    at = round(f.net.utc(f.net.now)) + 1800
    job = ops.firmware(image(64 * 10), NEW, GROUP, switch_at=at)
    f.net.run(until=f.net.now + 900)
    want = {"job": job, "stage": "switch", "at": at}
    assert [f.store.cursor(d, "firmware") for d in (1, 2)] == [want, want]
    assert {o.state for o in ops.report(job).values()} == {"sent"}
    f.store.close()
    f.store = Store(f.url, vault=f.vault)
    f.start()
    ops = Operations(f.eng)
    ops.resume()
    assert run(f, ops, job) == {1: "confirmed", 2: "confirmed"}
    assert all(m.banks.version == NEW for m in f.meters.values())


def test_firmware_parameters_are_checked():
    with pytest.raises(ConfigurationError):
        firmware_params(b"", NEW, GROUP)
    with pytest.raises(ConfigurationError):
        firmware_params(b"x", NEW, 300)
    with pytest.raises(ConfigurationError):
        firmware_params(b"x", NEW, GROUP, check_type=F.CHECK_CMAC)  # no key
    d = F.Download.of(b"abc", NEW)
    assert F.Download.decode(d.encode()) == d
    # CRC-32 of "123456789" is 0xCBF43926 (the ISO-HDLC check value)
    assert F.image_check(b"123456789", F.CHECK_CRC32)[:4] == bytes.fromhex("2639f4cb")


def test_with_no_loss_the_whole_image_goes_by_broadcast(tmp_path):
    f = feeder(tmp_path, n=3, reach=1000.0)
    ops = Operations(f.eng)
    job = ops.firmware(image(64 * 20), NEW, GROUP)
    assert set(run(f, ops, job).values()) == {"confirmed"}
    assert all(m.broadcasts.stats["served"] == 20 for m in f.meters.values())
    # and no EP09 went by unicast: the meters logged the 20 broadcast ones alone
    inv = L.EVENTS["procedure invoked"]
    for m in f.meters.values():
        ran = [struct.unpack_from("<H", a)[0] for _, c, mfg, a in m.history() if c == inv]
        assert ran.count(L.EP09) == 20 and ran.count(L.EP08) == 1


def test_the_command_line_downloads_an_image(tmp_path, monkeypatch, capsys):
    from osgp.concentrator.aio import commission
    from osgp.sim.serve import CnipMeterServer
    from tests.ops_cli import OpsCli

    osgp = OpsCli(tmp_path, monkeypatch)
    url = osgp.url
    path = tmp_path / "image.bin"
    path.write_bytes(image(64 * 6 + 5))
    with CnipMeterServer(3, seed=5, speed=1.0) as server:
        s = osgp.store()
        ids = commission(s, "s1", server.fleet)
        with server.lock:
            for d, m in zip(ids, server.meters):
                m.broadcasts.set_key(BKEY)
                m.groups.append(GROUP)
                m._apply_groups()
                s.put_key(d, BROADCAST_KEY, BKEY)
        s.close()
        argv = [
            "op",
            "firmware",
            str(path),
            "--fw-version",
            "5.1.0",
            "--group",
            str(GROUP),
            "--repeats",
            "0",
        ]
        argv += ["--store", url, "--channel", f"s1={server.url}", "--response-ms", "200"]
        assert osgp(*argv) == 0
        with server.lock:
            assert [m.banks.version for m in server.meters] == [NEW] * 3
            assert all(m.broadcasts.stats["served"] == 7 for m in server.meters)
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3 and all(": confirmed" in line and "5.01.00" in line for line in out)
