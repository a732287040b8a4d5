"""Key renewal (EP45, INFERRED) on the simulated feeder, for both suites:
losses at every request and answer, a concentrator restart between send and
confirm, the meters' own key state, event log and usage counters checked
through the protocol and on the simulated meters themselves."""

from __future__ import annotations

import json
import random
import struct

import pytest

from osgp.concentrator import KeyVault, Store, suites
from osgp.concentrator.engine import NORMAL, StatusPolicy
from osgp.concentrator.operations import Operations
from osgp.errors import AuthenticationError, MalformedError
from osgp.link import lon
from osgp.link.carrier import PlcDeviceCarrier
from osgp.security.aes_suite import PLC_AES_ENVELOPE, AesPskSuite
from osgp.security.suite import PLC_ENVELOPE, LegacySuite
from osgp.services import key_renewal as KR
from osgp.sim import Faults, SimMeter
from osgp.sim import layouts as L
from osgp.sim.keys import RenewableSuite, enable_key_renewal
from osgp.sim.network import MediumProfile, Network
from tests.test_concentrator import SPACING, Feeder

RUN_S = 1800.0
ET54 = 2048 + 54
SUITES = ("legacy", "aes")
#: Requests of one renewal without loss: STATUS (BT07 write, BT08 read),
#: STAGE (write, read), STATUS under the new key (write, read), the ET54 read.
REQUESTS = 7


class KeyFeeder(Feeder):
    """Meters of one suite along a segment, commissioned by hand, whose keys
    EP45 can renew; no random loss (the tests lose frames on purpose)."""

    def __init__(self, tmp_path, suite, n=2, *, max_usage=1_000_000, faults=None):
        self.net = Network(seed=3)
        self.seg = self.net.add_segment("seg-1", profile=MediumProfile(base_loss=0.0))
        self.url = f"sqlite:///{tmp_path / 'store.db'}"
        self.vault = KeyVault(bytes(range(32)))
        self.store = Store(self.url, vault=self.vault)
        self.meters, self.nodes, self.first = {}, {}, {}
        for i in range(n):
            addr = lon.SubnetNode(2, 1 + i)
            nid = bytes([4, 0, 0, 0, 0, i + 1])
            if suite == "aes":
                key, purpose = bytes([0xA0 + i]) * 16, suites.AES_PURPOSE
                dev = AesPskSuite(key, nid, role="device", envelope=PLC_AES_ENVELOPE)
            else:
                key, purpose = bytes([i + 1]) * 12, suites.LEGACY_PURPOSE
                dev = LegacySuite(key, PLC_ENVELOPE)
            m = SimMeter(
                f"SIM{i:05d}",
                links=[(PlcDeviceCarrier([addr, lon.NeuronId(nid)]), dev)],
                faults=faults(i) if faults else None,
            )
            enable_key_renewal(m, max_usage=max_usage)
            node = self.seg.add_meter(addr, SPACING * (i + 1), m.ports[0])
            d = self.store.upsert_device(
                nid, serial=m.serial, segment="seg-1", subnet=2, node=1 + i, status=NORMAL
            )
            self.store.put_key(d, purpose, key)
            self.store.put_routes(d, [([(p.subnet, p.node) for p in self.seg.route_to(addr)], 1.0)])
            self.meters[d], self.nodes[d], self.first[d] = m, node, key
        self.purpose = purpose
        self.start(StatusPolicy(attempts=6, retry_s=60))

    def restart(self):
        self.store.close()
        self.store = Store(self.url, vault=self.vault)
        self.start(StatusPolicy(attempts=6, retry_s=60))
        return Operations(self.eng)

    def keys(self, d):
        return self.meters[d].ports[0].suite  # the meter's RenewableSuite


class Lossy:
    """Stands for a meter port on its node: from the ``at``-th request on,
    for ``outage_s`` seconds, drops what comes in (``"request"``) or what
    the meter answers (``"answer"``, after the meter acted on it)."""

    def __init__(self, port, what, at, outage_s):
        self.port, self.what, self.at, self.outage_s = port, what, at, outage_s
        self.requests, self.until, self.dropped = 0, None, 0

    def __getattr__(self, name):
        return getattr(self.port, name)

    def receive_data(self, data, now=None):
        self.requests += 1
        if self.requests == self.at:
            self.until = now + self.outage_s
        losing = self.until is not None and now <= self.until
        if losing and self.what == "request":
            self.dropped += 1
            return []
        events = self.port.receive_data(data, now)
        if losing:
            while self.port.poll_transmit(now) is not None:
                self.dropped += 1
        return events


def run(f, ops, job, until=RUN_S):
    f.net.run(until=f.net.now + until)
    assert ops.idle
    return {d: o.state for d, o in ops.report(job).items()}


def read_with(f, d, key, table, offset=None, count=None):
    """Read through the engine's session of meter ``d`` under ``key``
    (its current suite is put back): (data, None) or (None, error)."""
    m = f.eng.meters[d]
    kid = f.keys(d).key_id if f.purpose == suites.AES_PURPOSE else 0
    suite = suites.client_suite(f.purpose, key, m.neuron, kid)
    if key == m.key:
        suite = m.session.suite
    out = {}

    def task():
        old = m.session.suite
        m.session.suite = suite
        try:
            out["data"] = yield m.session.read(table, offset, count)
        finally:
            m.session.suite = old

    t = f.eng.start(m, task(), "test read")
    f.net.run(until=f.net.now + 120)
    assert t.done
    return out.get("data"), t.error


def usage_read(f, d, key):
    data, err = read_with(f, d, key, ET54, 82, 4)
    return (struct.unpack("<I", data)[0], None) if err is None else (None, err)


def events(m, name):
    return [h for h in m.history() if h[2] and h[1] == L.MFG_EVENTS[name]]


def assert_renewed(f, d, ops, job, *, renewals=1):
    """The meter uses the vault's active key, switched exactly ``renewals``
    times, logged it, answers under the new key and refuses the old one."""
    m, s = f.meters[d], f.keys(d)
    new = f.store.key(d, f.purpose)
    assert new is not None and new != f.first[d]
    assert s.key == new and s.staged is None
    assert s.renewals == list(range(1, renewals + 1))
    assert f.store.key(d, f.purpose, state="pending") is None
    assert f.store.key(d, f.purpose, state="retired") is not None
    assert len(events(m, "key renewed")) == renewals
    assert events(m, "key staged"), "a switch without a staged key"
    # through the protocol: the new key works, the old one is refused (0x0B)
    used, err = usage_read(f, d, new)
    assert err is None and used <= 12, (used, err)
    _, err = read_with(f, d, f.first[d], 52)
    assert isinstance(err, AuthenticationError), err


@pytest.mark.parametrize("suite", SUITES)
def test_renewal_switches_the_meter_and_retires_the_old_key_only_then(tmp_path, suite):
    f = KeyFeeder(tmp_path, suite)
    ops = Operations(f.eng)
    before = {d: f.keys(d).usage.count for d in f.meters}
    job = ops.key_renewal()
    assert run(f, ops, job) == {1: "confirmed", 2: "confirmed"}, ops.report(job)
    for d in f.meters:
        assert_renewed(f, d, ops, job)
        assert f.store.key(d, f.purpose, state="retired") == f.first[d]
        assert f.keys(d).key_id == 1
        # the count started again at the switch (reads after it only)
        assert f.keys(d).usage.count < before[d] + REQUESTS
        stage = events(f.meters[d], "key staged")[0]
        assert struct.unpack_from("<H", stage[3])[0] == 1
        assert '"action": "EP45"' in ops.report(job)[d].detail
    if suite == "legacy":  # the legacy sequence counter ran on through the switch
        m = f.meters[1]
        assert m.ports[0].session.window.current > REQUESTS
    # a second renewal goes on from key id 1 to 2
    job = ops.key_renewal([1])
    assert run(f, ops, job) == {1: "confirmed"}
    assert f.keys(1).renewals == [1, 2]
    # the session state kept in the store holds no key in clear (AES keeps
    # its CryptoContext there, the key sealed by the vault)
    for d in f.meters:
        saved = json.dumps(f.store.cursor(d, "session"))
        assert f.store.key(d, f.purpose).hex() not in saved
        assert ("sealed_key" in saved) == (suite == "aes")
    # a restarted concentrator talks to the meter under the new key at once
    ops = f.restart()
    used, err = usage_read(f, 1, f.store.key(1, f.purpose))
    assert err is None, err


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("what", ["request", "answer"])
@pytest.mark.parametrize("at", range(1, REQUESTS + 1))
def test_a_lost_request_or_answer_at_any_step_ends_renewed(tmp_path, suite, what, at):
    f = KeyFeeder(tmp_path, suite, n=1)
    node = f.nodes[1]
    lossy = node.device = Lossy(node.device, what, at, outage_s=30.0)
    ops = Operations(f.eng)
    job = ops.key_renewal()
    assert run(f, ops, job) == {1: "confirmed"}, ops.report(job)
    assert lossy.dropped, "nothing was lost"
    assert_renewed(f, 1, ops, job)


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("stop", ["staged", "switched"])
def test_a_restart_between_send_and_confirm_settles_on_the_key_the_meter_answers(
    tmp_path, suite, stop
):
    f = KeyFeeder(tmp_path, suite, n=1)
    node = f.nodes[1]
    ops = Operations(f.eng)
    job = ops.key_renewal()
    s = f.keys(1)
    # the concentrator dies once the meter has staged the key (its answer
    # lost), or once the meter switched (the answer under the new key lost)
    node.device = Lossy(node.device, "answer", 3 if stop == "staged" else 5, outage_s=1e9)
    for _ in range(2000):
        f.net.run(until=f.net.now + 0.5)
        if (s.staged is not None) if stop == "staged" else bool(s.renewals):
            break
    assert ops.report(job)[1].state == "sent"
    assert f.store.key(1, f.purpose) == f.first[1]  # old key still active
    assert f.store.key(1, f.purpose, state="pending") is not None
    node.device = node.device.port
    ops = f.restart()
    if stop == "staged":  # not switched yet: the meter still answers to the old key
        _, err = read_with(f, 1, f.first[1], 52)
        assert err is None and not s.renewals and s.staged is not None
    assert ops.resume() == [job]
    assert run(f, ops, job) == {1: "confirmed"}, ops.report(job)
    assert_renewed(f, 1, ops, job)
    if stop == "switched":  # confirmed by the pending key alone, no second STAGE
        assert len(events(f.meters[1], "key staged")) == 1
        assert '"action": "none"' in ops.report(job)[1].detail


@pytest.mark.parametrize("suite", SUITES)
def test_usage_warning_at_80_percent_and_the_count_reset_by_renewal(tmp_path, suite):
    f = KeyFeeder(tmp_path, suite, n=1, max_usage=40)
    m, key = f.meters[1], f.first[1]
    data, err = read_with(f, 1, key, 2048 + 4, 123, 4)  # ET04 MAX_KEY_USAGE_COUNT
    assert err is None and struct.unpack("<I", data)[0] == 40
    for _ in range(33):
        _, err = read_with(f, 1, key, 52)
        assert err is None
    (warn,) = events(m, "key usage warning")
    assert struct.unpack_from("<I", warn[3])[0] == 32  # 80 % of 40
    used, _ = usage_read(f, 1, key)
    assert used >= 33
    ops = Operations(f.eng)
    job = ops.key_renewal()
    assert run(f, ops, job) == {1: "confirmed"}, ops.report(job)
    used, err = usage_read(f, 1, f.store.key(1, f.purpose))
    assert err is None and used < REQUESTS
    assert len(events(m, "key usage warning")) == 1


def test_the_meter_refuses_a_key_not_sealed_under_its_own():
    key = bytes([7]) * 12
    s = RenewableSuite(
        LegacySuite(key, PLC_ENVELOPE),
        key,
        lambda k, kid: LegacySuite(k, PLC_ENVELOPE),
        KR.PLC_LEGACY_RENEWAL,
    )
    new = bytes(range(12))
    good = KR.stage_params(KR.PLC_LEGACY_RENEWAL, key, new, 1)
    wrong = KR.stage_params(KR.PLC_LEGACY_RENEWAL, bytes(12), new, 1)
    assert s.stage(wrong) == (5, b"") and s.staged is None
    assert s.stage(good[:-1]) == (2, b"")
    assert s.stage(KR.stage_params(KR.PLC_LEGACY_RENEWAL, key, new, 2)) == (3, b"")
    assert s.stage(good) == (0, b"") and s.staged is not None
    assert KR.decode_status(s.status()[1]) == KR.KeyStatus(0, 1)
    # the sealed key is not in the parameters in clear
    assert new not in good
    # whatever a peer puts in the parameters ends in a result code, never an exception
    rng = random.Random(5)
    for n in L.PARAMETER_SIZES[L.EP45] * 50:
        code, _ = s.stage(bytes([1]) + rng.randbytes(n - 1))
        assert code in (2, 3, 5)
    with pytest.raises(MalformedError):
        KR.stage_params(KR.AES_RENEWAL, bytes(16), bytes(12), 1)
    with pytest.raises(MalformedError):
        KR.decode_status(b"\x00")


def test_the_command_line_renews_keys_over_cnip(tmp_path, monkeypatch, capsys):
    from osgp.sim.serve import CnipMeterServer
    from tests.ops_cli import OpsCli

    osgp = OpsCli(tmp_path, monkeypatch)
    url = osgp.url
    with CnipMeterServer(2, seed=9, speed=1.0) as server:
        with server.lock:  # served meters can renew their keys as they come
            old = [m.ports[0].suite.key for m in server.meters]
        ids = osgp.commission(server)
        chan = ("--channel", f"s1={server.url}", "--response-ms", "200")
        assert osgp("op", "key-renewal", "--store", url, *chan) == 0
        with server.lock:
            now = [m.ports[0].suite.key for m in server.meters]
            assert all(m.ports[0].suite.renewals == [1] for m in server.meters)
    s = osgp.store()
    assert [s.key(d, suites.LEGACY_PURPOSE) for d in ids] == now
    assert [s.key(d, suites.LEGACY_PURPOSE, state="retired") for d in ids] == old
    s.close()
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and all("key-renewal" in x and ": confirmed" in x for x in out)


class Killed(Exception):
    """The concentrator process dies here."""


@pytest.mark.parametrize("suite", SUITES)
def test_killed_between_saving_the_session_and_promoting_the_key(tmp_path, suite, monkeypatch):
    f = KeyFeeder(tmp_path, suite, n=1)
    ops = Operations(f.eng)
    job = ops.key_renewal()

    def die(*args):
        raise Killed

    monkeypatch.setattr(f.store, "promote_key", die)
    with pytest.raises(Killed):
        f.net.run(until=f.net.now + RUN_S)
    assert f.keys(1).renewals == [1]  # the meter switched
    assert f.store.key(1, f.purpose) == f.first[1]  # the vault did not
    monkeypatch.undo()
    ops = f.restart()
    if suite == "aes":  # the stored session is on the new key already
        used, err = usage_read(f, 1, f.eng.meters[1].key)
        assert err is None, err
    assert ops.resume() == [job]
    assert run(f, ops, job) == {1: "confirmed"}, ops.report(job)
    assert_renewed(f, 1, ops, job)


@pytest.mark.parametrize("suite", SUITES)
def test_random_loss_duplicates_and_a_reboot_leave_no_meter_in_doubt(tmp_path, suite):
    def faults(i):
        return Faults(seed=11 + i, drop=0.2, busy=0.05, duplicate=0.1, delay=0.05)

    f = KeyFeeder(tmp_path, suite, n=3, faults=faults)
    ops = Operations(f.eng)
    job = ops.key_renewal()
    f.net.at(f.net.now + 4.0, lambda now: f.meters[2].reboot(now))
    f.net.run(until=f.net.now + RUN_S)
    for d in f.meters:  # a meter is on a key the vault holds
        held = {f.store.key(d, f.purpose), f.store.key(d, f.purpose, state="pending")}
        assert f.keys(d).key in held
    if not ops.idle or set(ops.report(job).values()) != {"confirmed"}:
        ops = f.restart()
        ops.resume()
    assert run(f, ops, job) == {1: "confirmed", 2: "confirmed", 3: "confirmed"}
    assert sum(sum(m.ports[0].injected.values()) for m in f.meters.values()) > 0
    for d in f.meters:
        assert_renewed(f, d, ops, job)
