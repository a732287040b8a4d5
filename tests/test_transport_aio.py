"""asyncio transports over real loopback channels: pyserial-asyncio-fast on a
PTY and on socket://, fd-less pyserial handlers (loop://), CN/IP between two
asyncio datagram endpoints on 127.0.0.1, TCP, in-memory pairs, errors and
timeouts.  Each test runs in asyncio.run, bounded by asyncio.wait_for."""

from __future__ import annotations

import asyncio
import socket
import sys

import pytest

from osgp.transport import ConnectError, TransportClosed, TransportTimeout, aio, open_transport
from osgp.transport.handlers import protocol_osgpsim

from .test_transport import _closed_port, cnip_fields
from .test_transport_peers import echo, pty_pair, rfc2217_server, tcp_server

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="needs a PTY")


def run(coro, limit=10):
    return asyncio.run(asyncio.wait_for(coro, limit))


async def collect(t, n, timeout=2):
    got = b""
    while len(got) < n:
        got += await t.receive(timeout)
    return got


@posix_only
def test_pty_through_pyserial_asyncio_fast():
    import serial_asyncio_fast

    async def main(path, master):
        async with await aio.open_transport(path, timeout=2, baudrate=19200) as t:
            assert isinstance(t._transport, serial_asyncio_fast.SerialTransport)
            await t.send(bytes(range(200)))
            got = b""
            while len(got) < 200:
                got += await asyncio.get_running_loop().run_in_executor(
                    None, master.receive, 2
                )
            assert got == bytes(range(200))
            master.send(b"\x10\x20\x30")
            assert await collect(t, 3) == b"\x10\x20\x30"

    with pty_pair() as (path, master):
        run(main(path, master))


def test_socket_url_through_pyserial_asyncio_fast():
    async def main(port):
        async with await aio.open_transport(f"socket://127.0.0.1:{port}", timeout=2) as t:
            await t.send(b"\x00\x03abc")
            assert await collect(t, 5) == b"\x00\x03abc"

    with tcp_server(echo) as port:
        run(main(port))


def test_rfc2217_url_on_the_event_loop():
    async def main(port):
        async with await aio.open_transport(f"rfc2217://127.0.0.1:{port}", timeout=2) as t:
            await t.send(b"\x00\xff")
            assert await collect(t, 2) == b"\xff\x00"

    with rfc2217_server(lambda data: data[::-1]) as port:
        run(main(port))


def test_fd_less_handlers_use_a_reader_thread():
    class Upper:
        def handle(self, data):
            return data.upper()

    async def main():
        async with await aio.open_transport("loop://", timeout=1) as t:
            await t.send(b"loop")
            assert await collect(t, 4) == b"loop"
        protocol_osgpsim.register_device("upper", Upper())
        try:
            async with await aio.open_transport("osgpsim://upper", timeout=1) as t:
                await t.send(b"abc")
                assert await collect(t, 3) == b"ABC"
        finally:
            protocol_osgpsim.unregister_device("upper")

    run(main())


def test_cnip_between_two_asyncio_endpoints_with_headers_checked():
    async def main():
        dev = await aio.AsyncCnipTransport(local=("127.0.0.1", 0), timeout=2).open()
        host, port = dev.local_address[:2]
        seen = []

        async with await aio.open_transport(f"udp://{host}:{port}?session=3", timeout=2) as cli:
            for n in range(3):
                await cli.send(bytes([0x0C, n]))
                assert await dev.receive(2) == bytes([0x0C, n])
                h = dev.framing.last_header
                seen.append((h.version, h.packet_type, h.flags, h.session, h.sequence))
                await dev.send(bytes([0x0D, n]))
                assert await cli.receive(2) == bytes([0x0D, n])
            assert cli.framing.last_header.sequence == 2 and cli.framing.dropped == 0
        await dev.close()
        return seen

    # version 1, data packets, LonTalk, the client's session, numbered from 0
    assert run(main()) == [(1, 1, 0, 3, 0), (1, 1, 0, 3, 1), (1, 1, 0, 3, 2)]


def test_cnip_asyncio_packets_on_the_wire():
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    raw.bind(("127.0.0.1", 0))
    raw.settimeout(2)

    async def main(port):
        async with await aio.open_transport(f"udp://127.0.0.1:{port}", timeout=2) as t:
            await t.send(b"\x01\x02\x03\x04")
            pkt, addr = await asyncio.get_running_loop().run_in_executor(
                None, raw.recvfrom, 2048
            )
            fields, body = cnip_fields(pkt)
            assert fields == (24, 1, 1, 0, 0, 0, 0, 0, 0) and body == b"\x01\x02\x03\x04"
            raw.sendto(b"\x00\x15\x01\x01" + bytes(16) + b"\x99", addr)
            assert await t.receive(2) == b"\x99"

    try:
        run(main(raw.getsockname()[1]))
    finally:
        raw.close()


def test_cnip_datagrams_waiting_at_a_wake_up_are_one_batch():
    """The datagrams already waiting when the loop wakes are all read in that
    wake-up, in order, and ``batch_end`` is called once after them."""
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    raw.bind(("127.0.0.1", 0))

    async def main(port):
        async with await aio.open_transport(f"udp://127.0.0.1:{port}", timeout=2) as t:
            got, batches = [], []
            t.set_receiver(got.append, lambda: batches.append(len(got)))
            head = b"\x00\x15\x01\x01" + bytes(16)  # a 21-byte CN/IP data packet's header
            for n in range(5):  # sent before the loop runs again: all five wait
                raw.sendto(head + bytes([n]), t.local_address)
                if n == 2:
                    raw.sendto(b"\x00\x02", t.local_address)  # no CN/IP header: dropped
            for _ in range(100):
                await asyncio.sleep(0.01)
                if got:
                    break
            await asyncio.sleep(0.05)
            return got, batches, t.framing.dropped

    try:
        got, batches, dropped = run(main(raw.getsockname()[1]))
    finally:
        raw.close()
    assert got == [bytes([n]) for n in range(5)] and batches == [5] and dropped == 1


def test_cnip_peer_not_listening_is_a_silence_not_an_error():
    async def main(port):
        async with await aio.open_transport(f"udp://127.0.0.1:{port}", timeout=2) as t:
            for _ in range(3):
                await t.send(b"\x01")
                with pytest.raises(TransportTimeout):
                    await t.receive(0.05)

    run(main(_closed_port()))


def test_tcp_round_trip_and_peer_close():
    def answer_once(t, stop):
        t.send(t.receive(2)[::-1])

    async def main(port):
        async with await aio.open_transport(f"tcp://127.0.0.1:{port}", timeout=2) as t:
            assert isinstance(t, aio.AsyncTcpTransport)
            await t.send(b"abc")
            assert await collect(t, 3) == b"cba"
            with pytest.raises(TransportClosed, match="closed by the peer"):
                await t.receive(2)

    with tcp_server(answer_once) as port:
        run(main(port))


def test_memory_pair_and_mixed_sync_async_link():
    async def main():
        a, b = aio.memory_pair("apair")
        await a.send(b"1")
        await a.send(b"2")
        assert [await b.receive(1), await b.receive(1)] == [b"1", b"2"]
        await a.close()
        with pytest.raises(TransportClosed, match="closed by the peer"):
            await b.receive(1)
        # an asyncio listener served by a blocking client in a thread
        dev = aio.memory_listen("mixed")
        loop = asyncio.get_running_loop()

        def client():
            from osgp.transport import open_transport

            with open_transport("mem://mixed", timeout=2) as c:
                c.send(b"ping")
                return c.receive(2)

        fut = loop.run_in_executor(None, client)
        assert await dev.receive(2) == b"ping"
        await dev.send(b"pong")
        assert await fut == b"pong"
        await dev.close()

    run(main())


def test_receive_timeout_fires():
    async def main():
        a, _ = aio.memory_pair("quiet")
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(TransportTimeout, match=r"mem://quiet: receive timed out after 0.1 s"):
            await a.receive(0.1)
        assert loop.time() - t0 >= 0.09
        async with await aio.open_transport("loop://", timeout=1) as t:
            with pytest.raises(TransportTimeout, match="loop://"):
                await t.receive(0.05)

    run(main())


@pytest.mark.parametrize(
    "url",
    [
        "tcp://127.0.0.1:{port}",
        "socket://127.0.0.1:{port}",
        "/dev/osgp-no-such-port",
        "nosuchscheme://x",
        "mem://nobody-here",
        "udp://no-such-host.invalid:1628",
    ],
)
def test_connect_errors_name_the_url(url):
    url = url.format(port=_closed_port())

    async def main():
        with pytest.raises(ConnectError) as e:
            await aio.open_transport(url, timeout=2)
        assert e.value.url == url and str(e.value).startswith(url)

    run(main())


def test_cnip_socket_refused_by_the_host_is_a_connect_error(monkeypatch):
    # socket() itself can fail (an address family or a descriptor the host
    # will not give): a ConnectError naming the URL, not a bare OSError
    real = socket.socket

    def refuse_datagrams(family=-1, type=-1, *args, **kwargs):
        if type == socket.SOCK_DGRAM:
            raise OSError(97, "Address family not supported by protocol")
        return real(family, type, *args, **kwargs)  # the event loop's own sockets

    monkeypatch.setattr(socket, "socket", refuse_datagrams)

    async def main():
        with pytest.raises(ConnectError) as e:
            await aio.open_transport("udp://127.0.0.1:1628", timeout=2)
        assert e.value.url == "udp://127.0.0.1:1628" and "not supported" in str(e.value)

    run(main())
    with pytest.raises(ConnectError) as e:  # the blocking transport alike
        open_transport("udp://127.0.0.1:1628", timeout=2)
    assert e.value.url == "udp://127.0.0.1:1628" and "not supported" in str(e.value)


@pytest.mark.parametrize("make", ["loop", "tcp", "udp", "mem", "pty"])
def test_close_is_idempotent_and_final(make):
    async def main(url):
        t = aio.memory_pair()[0] if url is None else await aio.open_transport(url, timeout=2)
        assert t.is_open
        await t.close()
        await t.close()
        assert not t.is_open
        with pytest.raises(TransportClosed):
            await t.send(b"x")
        with pytest.raises(TransportClosed):
            await t.receive(0.01)
        with pytest.raises(TransportClosed):
            await t.open()

    if make == "pty":
        if sys.platform == "win32":
            pytest.skip("needs a PTY")
        with pty_pair() as (path, _):
            run(main(path))
        return
    with tcp_server(lambda t, stop: None) as port:
        url = {"loop": "loop://", "tcp": f"tcp://127.0.0.1:{port}", "udp": "udp://127.0.0.1:9"}
        run(main(url.get(make)))

