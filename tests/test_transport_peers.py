"""Helpers (no tests) for the transport tests, real loopback peers: a TCP server thread on
127.0.0.1, a PTY pair whose master end is read with os.read/os.write, and a
thread that runs a handler on a transport until told to stop."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading

from osgp.transport import TcpTransport, TransportClosed, TransportTimeout


@contextlib.contextmanager
def in_thread(fn, *args):
    """Run ``fn(*args, stop)`` in a thread; stop and join it on exit."""
    stop = threading.Event()
    th = threading.Thread(target=fn, args=(*args, stop), daemon=True)
    th.start()
    try:
        yield stop
    finally:
        stop.set()
        th.join(5)
        assert not th.is_alive(), "peer thread did not stop"


def echo(transport, stop):
    while not stop.is_set():
        try:
            data = transport.receive(0.05)
        except TransportTimeout:
            continue
        except TransportClosed:
            return
        transport.send(data)


@contextlib.contextmanager
def one_connection(serve_conn):
    """A TCP listener on 127.0.0.1 whose first connection goes to
    ``serve_conn(socket, stop)`` in a thread.  Yields the port."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(0.05)

    def run(stop):
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except socket.timeout:
                continue
            serve_conn(conn, stop)
            return

    try:
        with in_thread(run):
            yield srv.getsockname()[1]
    finally:
        srv.close()


def tcp_server(handler):
    """One TCP connection on 127.0.0.1 as a transport for ``handler(transport, stop)``."""

    def serve_conn(conn, stop):
        with TcpTransport.from_socket(conn, timeout=2) as t:
            handler(t, stop)

    return one_connection(serve_conn)


class PtyMaster:
    """The master side of a PTY as a minimal blocking transport."""

    datagram = False

    def __init__(self, fd):
        self.fd = fd
        self.url = f"pty master fd {fd}"

    def send(self, data):
        os.write(self.fd, data)

    def receive(self, timeout):
        r, _, _ = select.select([self.fd], [], [], timeout)
        if not r:
            raise TransportTimeout(self.url, "receive", timeout)
        try:
            return os.read(self.fd, 4096)
        except OSError as exc:  # EIO: the slave side closed
            raise TransportClosed(self.url, str(exc)) from exc


@contextlib.contextmanager
def pty_pair():
    """(slave device path, PtyMaster); the slave is raw so bytes pass unchanged."""
    import tty  # POSIX only (termios)

    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        yield os.ttyname(slave), PtyMaster(master)
    finally:
        os.close(slave)
        os.close(master)


def rfc2217_server(handle):
    """An RFC 2217 (Telnet COM port control) server on 127.0.0.1 built on
    pyserial's own server side, ``serial.rfc2217.PortManager``: it negotiates
    with the client and unescapes the data, which goes to ``handle(bytes) ->
    bytes``; the reply goes back escaped.  Yields the port."""
    import serial
    import serial.rfc2217

    def serve_conn(conn, stop):
        conn.settimeout(0.05)
        lines = serial.serial_for_url("loop://")  # holds the line settings the client sets

        class Net:
            write = conn.sendall

        pm = serial.rfc2217.PortManager(lines, Net())
        with conn:
            while not stop.is_set():
                try:
                    data = conn.recv(4096)
                except socket.timeout:
                    continue
                if not data:
                    break
                payload = b"".join(pm.filter(data))
                reply = handle(payload) if payload else b""
                if reply:
                    conn.sendall(b"".join(pm.escape(reply)))
        lines.close()

    return one_connection(serve_conn)
