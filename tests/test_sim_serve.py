"""Simulated meters served on pseudo-terminals and loopback sockets, read by
a client session through the transports (and the ``osgp simulate`` command)."""

from __future__ import annotations

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
