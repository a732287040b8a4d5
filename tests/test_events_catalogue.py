"""The catalogue of BT74 event codes and names (osgp.tables.events), shared by
the simulator, the concentrator's store, batch decoding and the Wireshark
dissector's constants."""

from osgp.sim import layouts
from osgp.tables import events


def test_names_by_code_both_ways():
    # C12.19 standard numbering: 21 self read, 20 demand reset (INFERRED for OSGP)
    assert events.event_name(21) == "self read"
    assert events.event_name(20, False) == "demand reset"
    assert events.event_name(1, mfg=True) == "contactor opened"
    # a whole HISTORY_CODE word: bit 11 is STD_VS_MFG_FLAG [OPT p.51-53]
    assert events.event_name(0x800 | 2) == "contactor closed"
    assert events.event_name(99) == "std event 99"
    assert events.event_name(0x800 | 99) == "mfg event 99"
    assert events.names(True) == {c: n for n, c in events.MFG_EVENTS.items()}


def test_codes_are_unique_and_fit_the_code_field():
    for table in (events.EVENTS, events.MFG_EVENTS):
        assert len(set(table.values())) == len(table)
        assert all(0 <= c < events.MFG_FLAG for c in table.values())


def test_the_simulator_logs_from_the_same_catalogue():
    assert layouts.EVENTS is events.EVENTS and layouts.MFG_EVENTS is events.MFG_EVENTS
