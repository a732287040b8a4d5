"""One registry of operation kinds (osgp.concentrator.operations.TASKS): a
kind registered there is checked and run by ``Operations.submit``, taken up
again by ``Operations.resume`` after a restart and offered by ``osgp op``; the
control-output and tariff kinds are registered there and nowhere else."""

from __future__ import annotations

import argparse
import json

import pytest

from osgp.concentrator import Store, ops_control, tariffs
from osgp.concentrator import operations as ops_mod
from osgp.concentrator.cli_ops import add_ops_command
from osgp.concentrator.operations import TASKS, Kind, Operations
from osgp.errors import ProtocolError
from tests.test_concentrator import Feeder
from tests.test_operations import run

ET = 2048


def _status(ops, m, run):
    """ET23 DISCONNECT_INTERNAL_STATUS, offset 94 [MEP p.99]."""
    got = yield m.session.read(ET + 23, 94, 1, priority=ops.priority)
    return json.dumps({"status": got[0], "note": run.params["note"]})


def _check(params):
    if not isinstance(params.get("note"), str):
        raise ProtocolError("operations: note must be a string")


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(TASKS, "toy-status", Kind(_status, _check, "read the contactor status"))


def test_a_registered_kind_is_checked_run_and_resumed(tmp_path, toy):
    f = Feeder(tmp_path, n=3, base_loss=0.0)
    ops = Operations(f.eng)
    with pytest.raises(ProtocolError, match="note must be a string"):
        ops.submit("toy-status", {}, None)
    with pytest.raises(ProtocolError, match="unknown operation 'toy-stat'"):
        ops.submit("toy-stat", {"note": "x"}, None)
    job = ops.submit("toy-status", {"note": "n1"}, None)
    # the process ends before any meter was asked: a new one resumes the job from the store
    f.store.close()
    f.store = Store(f.url, vault=f.vault)
    f.start()
    f.meters[2].closed = False  # the meter's own contactor, as its ET23 shows it
    ops = Operations(f.eng)
    assert ops.resume() == [job]
    assert run(f, ops, job) == {1: "confirmed", 2: "confirmed", 3: "confirmed"}
    got = {d: json.loads(o.detail) for d, o in ops.report(job).items()}
    assert got == {1: {"status": 0, "note": "n1"}, 2: {"status": 2, "note": "n1"},
                   3: {"status": 0, "note": "n1"}}  # fmt: skip


def test_osgp_op_offers_every_registered_kind(toy):
    parser = argparse.ArgumentParser()
    add_ops_command(parser.add_subparsers())
    offered = next(
        a for a in parser._subparsers._group_actions[0].choices["op"]._actions
        if isinstance(a, argparse._SubParsersAction)
    )  # fmt: skip
    assert "toy-status" in offered.choices
    helps = {a.dest: a.help for a in offered._choices_actions}
    assert helps["toy-status"] == "read the contactor status"
    assert helps["relay-open"] == ops_control.HELP["relay-open"]
    assert helps["tou-arm"] == tariffs.HELP["tou-arm"]
    for kind in (*ops_control.HELP, *tariffs.KINDS, "clock-sync"):
        assert kind in TASKS and kind in offered.choices
    assert set(offered.choices) == {*ops_mod.KINDS, *TASKS, "resume", "report"}


def test_osgp_op_repeatable_options():
    parser = argparse.ArgumentParser()
    add_ops_command(parser.add_subparsers())
    common = ["--store", "sqlite://", "--channel", "s1=udp://127.0.0.1:1"]
    args = parser.parse_args(
        ["op", "relay-calendar", "2", *common, "--switch", "06:30=closed", "--switch", "22:00=open"]
    )
    assert ops_control.params_of("relay-calendar", args) == {
        "relay": 2,
        "switches": [[6, 30, 1], [22, 0, 0]],
    }
    args = parser.parse_args(["op", "relay-calendar", "1", *common])
    assert ops_control.params_of("relay-calendar", args) == {"relay": 1, "switches": []}
    args = parser.parse_args(["op", "control-settings", *common, "--set", "PRIMARY_MAX_LEVEL=9"])
    assert ops_control.params_of("control-settings", args) == {"set": {"PRIMARY_MAX_LEVEL": 9}}
    with pytest.raises(SystemExit):  # --set is required
        parser.parse_args(["op", "control-settings", *common])
