"""Profile bundles: every choice has a provenance, derived sizes agree with
the published figures, and the README's conformance table is the bundles'."""

from __future__ import annotations

from pathlib import Path

import pytest

from osgp.errors import ConfigurationError
from osgp.link import mep, optical
from osgp.session import profiles as P

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.parametrize("b", list(P.BUNDLES.values()), ids=list(P.BUNDLES))
def test_every_choice_has_a_status_and_a_source(b):
    for name in P._DOCUMENTED:
        if getattr(b, name) is not None:
            prov = b.provenance[name]
            assert prov.status in (P.VERIFIED, P.CONFIRMED, P.INFERRED) and prov.source


def test_a_bundle_without_provenance_is_refused():
    from dataclasses import replace

    with pytest.raises(ConfigurationError):
        replace(P.MEP, provenance={})
    with pytest.raises(ConfigurationError):
        P.Provenance("PROBABLY", "x")


def test_derived_sizes_match_the_published_limits():
    # MEP: 476-byte cap (p.8) less code/count and the 12/8-byte trailers
    d = P.derived_services("x", mep.PROFILE.max_message, 12, 8, False)
    assert (d.max_read, d.max_write) == (P.MEP.services.max_read, P.MEP.services.max_write)
    assert d.max_write == 456  # the ET52 limit the MEP guide states (p.43)
    o = P.derived_services("x", optical.NEGOTIATED.max_apdu, 0, 0, True)
    assert (o.max_read, o.max_write) == (P.OPTICAL.services.max_read, P.OPTICAL.services.max_write)
    # PLC: 84/75 (training material) both fill a 95-byte APDU with the MEP trailer
    assert 1 + 2 + P.PLC.services.max_read + 8 == 95 == 8 + P.PLC.services.max_write + 12
    # under AES the trailer is 4 + tag both ways: every size still fits its link
    for b in (P.MEP_AES, P.PLC_AES):
        cap = b.framing.max_message if b.link == "mep" else b.framing.max_apdu
        assert 3 + b.services.max_read + 12 <= cap and 8 + b.services.max_write + 12 <= cap


def test_bundle_lookup():
    assert P.bundle("plc", "aes") is P.PLC_AES and P.bundle("optical") is P.OPTICAL
    with pytest.raises(ConfigurationError):
        P.bundle("rs485")


@pytest.mark.skipif(not README.exists(), reason="README not next to the tests (wheel test copy)")
def test_readme_conformance_table_is_generated_from_the_bundles():
    text = README.read_text(encoding="utf-8")
    block = text.split("<!-- conformance:begin -->\n", 1)[1].split("<!-- conformance:end -->")[0]
    assert block == P.conformance_table(), "run scripts/gen_conformance.py"
    assert text.count("INFERRED") >= len(
        [1 for b in P.BUNDLES.values() for p in b.provenance.values() if p.status == "INFERRED"]
    )
