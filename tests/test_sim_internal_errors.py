"""A fault inside the simulated meter itself (a table render or a procedure
handler that raises) is answered with "table operation not possible" (0x05,
[MEP p.11]) and counted, never left unanswered: the client sees that code,
not the "invalid sequence number" (0x0C) its retry would otherwise meet, and
the next request is served as usual."""

from __future__ import annotations

import pytest

from osgp.errors import DeviceError, SequenceError
from osgp.sim import layouts as L
from osgp.sim import meter as sim_meter

from .conftest import pump
from .test_sim_meter import Reader, make

TABLE_OPERATION_NOT_POSSIBLE = 0x05  # [MEP p.11]


def _once(fn):
    """``fn`` that raises the first time it is called."""
    calls = []

    def wrapped(*a):
        calls.append(a)
        if len(calls) == 1:
            raise RuntimeError("injected fault")
        return fn(*a)

    return wrapped


@pytest.mark.parametrize("link", ["mep", "plc"])
def test_a_failing_render_is_answered_and_the_next_read_works(link, monkeypatch):
    meter, port, client = make(link)
    render, key = sim_meter._RENDER[52]
    monkeypatch.setitem(sim_meter._RENDER, 52, (_once(render), key))
    op = client.read(52)
    pump(client, port, now=10.0)
    assert isinstance(op.error, DeviceError) and not isinstance(op.error, SequenceError)
    assert op.error.code == TABLE_OPERATION_NOT_POSSIBLE
    assert port.errors == {"RuntimeError": 1}
    op = client.read(52)
    pump(client, port, now=11.0)
    assert op.error is None and len(op.result) == 7  # BT52 answered as usual
    assert port.errors == {"RuntimeError": 1}


def test_a_failing_procedure_is_answered_and_the_next_call_works(monkeypatch):
    meter, port, client = make("mep")
    r = Reader(client, port)
    monkeypatch.setitem(sim_meter._HANDLERS, L.EP34, _once(sim_meter._HANDLERS[L.EP34]))
    with pytest.raises(DeviceError) as err:
        r.call(20.0, 34)
    assert err.value.code == TABLE_OPERATION_NOT_POSSIBLE
    assert not isinstance(err.value, SequenceError)
    assert port.errors == {"RuntimeError": 1}
    res, _ = r.call(21.0, 34)  # the demand reset, done this time
    assert res == b"\x01" and r.decode(22.0, 23)["NBR_DEMAND_RESETS"] == 1
