"""Nothing a peer sends raises out of a session: random bytes, truncated and
bit-flipped frames end as counted drops, response codes or failed operations."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from osgp.errors import OSGPError

from .conftest import make_pair, reply

T52 = bytearray(b"\x19\x02\x10\x0f\x3b\x37\x01")
LINKS = ["mep", "optical", "plc"]


@settings(max_examples=150, deadline=None)
@given(link=st.sampled_from(LINKS), data=st.lists(st.binary(max_size=120), max_size=6))
def test_random_bytes_never_raise(link, data):
    c, d = make_pair(link, tables={52: bytearray(T52)})
    op = c.read(52)
    c.poll_transmit(0.0)
    for chunk in data:
        c.receive_data(chunk, 0.1)
        d.receive_data(chunk, 0.1)
        while d.poll_transmit(0.1) is not None:
            pass
    finish(c, op)


def finish(c, op):
    """Drive the client's timers (no device answers any more): the operation
    must end, with the right data or an error from the osgp hierarchy."""
    now = 0.0
    for _ in range(50):
        if op.done:
            break
        if c.poll_transmit(now) is None:
            deadline = c.next_deadline()
            assert deadline is not None, "an unfinished operation must have a timer"
            now = max(now, deadline)
            c.handle_timeout(now)
    assert op.done
    assert op.error is None or isinstance(op.error, OSGPError)
    assert op.error is not None or op.result in (bytes(T52), bytes(range(100)))


@settings(max_examples=150, deadline=None)
@given(
    link=st.sampled_from(LINKS),
    flips=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 7)), min_size=1, max_size=3),
    cut=st.one_of(st.none(), st.integers(0, 400)),
)
def test_damaged_frames_never_raise(link, flips, cut):
    c, d = make_pair(link, tables={52: bytearray(T52), 0x17: bytearray(range(200))})
    op = c.read(0x17, 0, 100)
    req = c.poll_transmit(0.0)
    resp = reply(d, req)

    def damage(frame):
        b = bytearray(frame)
        for pos, bit in flips:
            b[pos % len(b)] ^= 1 << bit
        return bytes(b if cut is None else b[: cut % (len(b) + 1)])

    d.receive_data(damage(req), 0.0)  # the device side copes with a damaged request
    while d.poll_transmit(0.0) is not None:
        pass
    if resp is not None:
        c.receive_data(damage(resp), 0.0)
    finish(c, op)


def test_retries_are_counted_per_exchange_not_per_operation():
    """A read in many partial exchanges, each losing its first request:
    more retries in total than the limit, never more than one per exchange."""
    from .conftest import make_pair, pump

    image = bytes(i & 0xFF for i in range(2000))
    c, d = make_pair("mep", tables={1000: bytearray(image)})
    seen = set()

    def drop(direction, frame):
        if direction == "c" and frame not in seen:
            seen.add(frame)
            return True  # every new request is lost once; its retry gets through
        return False

    op = c.read(1000, 0, len(image))
    pump(c, d, drop=drop)
    assert op.error is None and op.result == image
    assert op.retries > c.retries and op.retries == op.exchanges
