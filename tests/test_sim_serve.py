"""Simulated meters served on pseudo-terminals and loopback sockets, read by
a client session through the transports (and the ``osgp simulate`` command)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from osgp import tables
from osgp.link.carrier import MepCarrier
from osgp.security.suite import MEP_ENVELOPE, LegacySuite
from osgp.session import ClientSession
from osgp.sim.serve import DEFAULT_MEP_KEY, MeterServer
from osgp.transport import open_transport
from osgp.transport.driver import run_until_complete


def read_bt01(url):
    c = ClientSession(MepCarrier(), LegacySuite(DEFAULT_MEP_KEY, MEP_ENVELOPE))
    with open_transport(url, timeout=2) as t:
        return tables.decode(1, run_until_complete(c, t, c.read(1), timeout=10))


@pytest.mark.parametrize("kind", ["pty", "tcp"])
def test_each_served_meter_answers_with_its_own_serial(kind):
    if kind == "pty" and sys.platform == "win32":
        pytest.skip("pseudo-terminals need a POSIX system")
    with MeterServer(3, kind=kind, seed=7) as server:
        urls = server.urls()
        assert len(set(urls.values())) == 3
        for serial, url in urls.items():
            bt01 = read_bt01(url)
            assert bt01["MFG_SERIAL_NUMBER"].strip() == serial


@pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals need a POSIX system")
def test_osgp_simulate_prints_urls_that_work():
    proc = subprocess.Popen(
        [sys.executable, "-m", "osgp", "simulate", "--meters", "2", "--duration", "20"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        header = proc.stdout.readline()
        assert "2 simulated meter(s)" in header
        lines = [proc.stdout.readline().split() for _ in range(2)]
        for serial, url in lines:
            assert read_bt01(url)["MFG_SERIAL_NUMBER"].strip() == serial
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("offset", [None, "0", "3600"])
def test_osgp_simulate_serial_meters_have_run_the_start_offset(offset):
    """``--start-offset`` (default one day) applies to served serial meters
    too: their load profile holds one 15-minute interval per quarter hour
    they have run (BT63 NBR_VALID_INT, read by ``osgp read``), the last one
    perhaps not yet closed by the meter's own clock, which drifts."""
    cmd = [sys.executable, "-m", "osgp", "simulate", "--kind", "tcp", "--duration", "20"]
    if offset is not None:
        cmd += ["--start-offset", offset]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        proc.stdout.readline()
        url = proc.stdout.readline().split()[1]
        out = subprocess.run(
            [sys.executable, "-m", "osgp", "read", url, "BT63"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    finally:
        proc.terminate()
        proc.wait(10)
    assert out.returncode == 0, out.stderr
    valid = json.loads(out.stdout)["LP_STATUS_SETS"][0]["NBR_VALID_INT"]
    quarters = {None: 96, "0": 0, "3600": 4}[offset]
    assert valid in (quarters, max(quarters - 1, 0)), valid


def test_osgp_simulate_refuses_cnip_options_for_serial_meters():
    out = subprocess.run(
        [sys.executable, "-m", "osgp", "simulate", "--kind", "tcp", "--speed", "60"],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert out.returncode == 2 and "--speed: for --kind cnip only" in out.stderr


def test_osgpsim_url_serves_a_full_meter_over_mep():
    # osgpsim://meter?... builds a SimMeter in this process at each open
    # (importing osgp.sim registers it); osgp's own client reads it through
    # pyserial's serial_for_url, the path any pyserial-based tool takes
    import serial

    from osgp.sim import layouts as L
    from osgp.sim.serve import url_meter
    from osgp.transport.handlers import register

    register()
    twin = url_meter({"seed": "7"}).meter
    url = "osgpsim://meter?link=mep&seed=7"
    c = ClientSession(MepCarrier(), LegacySuite(DEFAULT_MEP_KEY, MEP_ENVELOPE))
    with open_transport(url, timeout=2) as t:
        bt01 = run_until_complete(c, t, c.read(1), timeout=10)
        assert bt01 == twin.image(1)
        dims = {n: run_until_complete(c, t, c.read(n), timeout=10) for n in (0, 21)}
        before = tables.decode(23, run_until_complete(c, t, c.read(23), timeout=10), dims)
        # a procedure acting on the meter's state: EP34 demand reset counts in BT23
        run_until_complete(c, t, c.call(L.EP34 - L.EP, mfg=True), timeout=10)
        after = tables.decode(23, run_until_complete(c, t, c.read(23), timeout=10), dims)
    assert after["NBR_DEMAND_RESETS"] == (before["NBR_DEMAND_RESETS"] + 1) & 0xFF
    port = serial.serial_for_url("osgpsim://meter?seed=7", timeout=0.5)
    try:
        port.write(b"\x00\x00")  # an alert-length frame: dropped, nothing answers
        assert port.read(1) == b""
    finally:
        port.close()
    for bad in ("osgpsim://meter?link=plc", "osgpsim://meter?seed=x", "osgpsim://meter?speed=2"):
        with pytest.raises(serial.SerialException, match="osgpsim://meter"):
            serial.serial_for_url(bad)
