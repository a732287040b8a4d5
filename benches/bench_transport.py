"""Transport benchmarks: one MEP table read (legacy suite, one exchange)
through osgp.transport.driver, against the same exchange with the two
sessions wired back to back in-process (no transport: the floor).

* transport-read: back to back; osgpsim:// (pyserial handler, same thread);
  mem:// (device in a thread); tcp:// on 127.0.0.1 (device in a thread);
  CN/IP on 127.0.0.1 (device in a thread); asyncio mem:// (device task).

    python -m pytest benches/bench_transport.py --benchmark-only
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from dataclasses import replace

import pytest

from osgp import session as S
from osgp.link import carrier as C
from osgp.security.suite import MEP_ENVELOPE, LegacySuite
from osgp.transport import CnipTransport, TcpTransport, aio, memory_pair, open_transport
from osgp.transport.driver import (
    SessionDevice,
    async_run_until_complete,
    async_serve,
    run_until_complete,
    serve,
)
from osgp.transport.handlers import protocol_osgpsim

KEY = bytes([1]) * 16
IMAGE = bytes(range(100))


def sessions():
    # no 100 ms request gap between rounds: the bench times the transport, not the throttle
    fast = replace(S.MEP, timers=replace(S.MEP.timers, request_gap_ms=0))
    c = S.ClientSession(C.MepCarrier(), LegacySuite(KEY, MEP_ENVELOPE), profile=fast)
    d = S.DeviceSession(C.MepDeviceCarrier(), LegacySuite(KEY, MEP_ENVELOPE), tables={52: IMAGE})
    return c, d


def back_to_back(c, d):
    op = c.read(52)
    clock[0] += 1.0  # past the MEP request gap
    frame = c.poll_transmit(clock[0])
    while frame is not None:
        d.receive_data(frame)
        reply = d.poll_transmit()
        while reply is not None:
            c.receive_data(reply)
            reply = d.poll_transmit()
        frame = c.poll_transmit(clock[0])
    return op.result


clock = [0.0]


@contextlib.contextmanager
def served(end, d):
    stop = threading.Event()
    th = threading.Thread(target=serve, args=(d, end, stop), daemon=True)
    th.start()
    yield
    stop.set()
    th.join(5)


@pytest.mark.benchmark(group="transport-read")
def test_back_to_back(benchmark):
    c, d = sessions()
    assert benchmark(back_to_back, c, d) == IMAGE


@pytest.mark.benchmark(group="transport-read")
def test_osgpsim(benchmark):
    c, d = sessions()
    protocol_osgpsim.register_device("bench", SessionDevice(d))
    try:
        with open_transport("osgpsim://bench", timeout=2) as t:
            assert benchmark(lambda: run_until_complete(c, t, c.read(52), 5)) == IMAGE
    finally:
        protocol_osgpsim.unregister_device("bench")


@pytest.mark.benchmark(group="transport-read")
def test_memory_thread(benchmark):
    c, d = sessions()
    a, b = memory_pair("bench")
    with served(b, d):
        assert benchmark(lambda: run_until_complete(c, a, c.read(52), 5)) == IMAGE
    a.close()


@pytest.mark.benchmark(group="transport-read")
def test_tcp_loopback(benchmark):
    c, d = sessions()
    srv = socket.create_server(("127.0.0.1", 0))
    with open_transport(f"tcp://127.0.0.1:{srv.getsockname()[1]}", timeout=2) as t:
        end = TcpTransport.from_socket(srv.accept()[0])
        with served(end, d):
            assert benchmark(lambda: run_until_complete(c, t, c.read(52), 5)) == IMAGE
        end.close()
    srv.close()


@pytest.mark.benchmark(group="transport-read")
def test_cnip_loopback(benchmark):
    c, d = sessions()
    with CnipTransport(local=("127.0.0.1", 0), timeout=2) as end, served(end, d):
        with open_transport(f"udp://127.0.0.1:{end.local_address[1]}", timeout=2) as t:
            assert benchmark(lambda: run_until_complete(c, t, c.read(52), 5)) == IMAGE


@pytest.mark.benchmark(group="transport-read")
def test_asyncio_memory(benchmark):
    c, d = sessions()
    loop = asyncio.new_event_loop()

    async def setup():
        a, b = aio.memory_pair("abench")
        return a, asyncio.ensure_future(async_serve(d, b))

    a, task = loop.run_until_complete(setup())
    try:
        result = benchmark(
            lambda: loop.run_until_complete(async_run_until_complete(c, a, c.read(52), 5))
        )
        assert result == IMAGE
    finally:
        loop.run_until_complete(a.close())
        loop.run_until_complete(asyncio.wait_for(task, 2))
        loop.close()
