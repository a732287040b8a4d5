"""Write the constants block of ``osgp_dissector.lua`` from osgp's own tables.

Everything the dissector names or sizes comes from the library: request codes
(:mod:`osgp.services.messages`), response codes (:mod:`osgp.codes`), table
and procedure names (the CLC/TS 50586 catalogue, :func:`osgp.tables.catalogue`),
procedure result codes (:mod:`osgp.services.procedures`), the PLC and MEP
envelope choices (:data:`osgp.link.lon.PLC_PROFILE`,
:data:`osgp.security.suite.PLC_ENVELOPE`, :data:`osgp.security.legacy.PLC`,
the MEP equivalents) with their status from the profile bundles
(:mod:`osgp.session.profiles`), the OSGP-AES-128-PSK frame
(:mod:`osgp.security.aes_suite`, :class:`osgp.security.aes_psk.AesPskProfile`,
with a nonce example the plugin checks its own nonce layout against when it
loads), the BT74 event names (:mod:`osgp.tables.events`), and the Annex G
proxy layout (:mod:`osgp.link.lon_proxy`).  So the dissector never drifts from
the library: the suite regenerates the block and compares it with the shipped
plugin.

    python -m osgp.wireshark.generate            # the plugin on stdout
    python -m osgp.wireshark.generate --write    # rewrite the shipped file
    python -m osgp.wireshark.generate --check    # exit 1 when it is stale
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, List, Optional, Sequence

import osgp
from osgp import codes, tables
from osgp.errors import ConfigurationError
from osgp.link import lon, lon_proxy, mep
from osgp.security import aes_psk, aes_suite, legacy, suite
from osgp.services import messages, procedures
from osgp.session import profiles
from osgp.tables import events

__all__ = ["PLUGIN_NAME", "BEGIN", "END", "constants", "render", "plugin", "template", "main"]

PLUGIN_NAME = "osgp_dissector.lua"
BEGIN = "-- BEGIN GENERATED CONSTANTS (python -m osgp.wireshark.generate --write)"
END = "-- END GENERATED CONSTANTS"


def lua_str(s: str) -> str:
    """A Lua string literal: printable ASCII as is, every other byte of the
    UTF-8 form as a decimal escape (Lua 5.2 reference manual §3.1)."""
    out = []
    for b in s.encode("utf-8"):
        c = chr(b)
        if c in '"\\':
            out.append("\\" + c)
        elif 32 <= b < 127:
            out.append(c)
        else:
            out.append(f"\\{b:03d}")
    return '"' + "".join(out) + '"'


def _lua(v: Any) -> str:
    if v is None:
        return "nil"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return lua_str(v)
    if isinstance(v, bytes):
        return lua_str(v.hex())
    if isinstance(v, (list, tuple)):
        return "{" + ", ".join(_lua(x) for x in v) + "}"
    raise ConfigurationError(f"no Lua form for {v!r}")


def _map(name: str, items: Iterable[tuple[int, Any]]) -> List[str]:
    lines = [f"C.{name} = {{"]
    lines += [f"  [{k}] = {_lua(v)}," for k, v in sorted(items)]
    return lines + ["}"]


def _record(name: str, fields: Sequence[tuple[str, Any]]) -> List[str]:
    lines = [f"C.{name} = {{"]
    lines += [f"  {k} = {_lua(v)}," for k, v in fields]
    return lines + ["}"]


def _status(bundle: profiles.LinkProfile, choice: str) -> str:
    p = bundle.provenance[choice]
    return f"{p.status}: {p.source}"


# a nonce the plugin rebuilds at load time: a layout change in AesPskProfile
# that the Lua code does not follow stops the plugin with an error
_NONCE_EXAMPLE = (aes_psk.UP, bytes.fromhex("a1a2a3a4a5a6"), 0x0102, 0x03040506)


def _aes_record(name: str, env: aes_suite.AesEnvelope, bundle: profiles.LinkProfile) -> List[str]:
    prof = env.aes
    direction, address, key_id, seq = _NONCE_EXAMPLE
    return _record(
        name,
        (
            ("suite", "OSGP-AES-128-PSK"),
            ("seq_size", 4),  # frame = seq:4 BE || ciphertext || tag (AesPskProfile)
            ("tag_len", prof.tag_len),
            ("nonce_len", prof.nonce_len),
            ("address_len", prof.address_len),
            ("down", aes_psk.DOWN),
            ("up", aes_psk.UP),
            ("request_aad", env.request_aad),
            ("bind_response", env.bind_response),
            ("auth_failure_in_clear", env.auth_failure_in_clear),
            ("nonce_example", [direction, address, key_id, seq]),
            ("nonce_example_value", prof.nonce(direction, False, address, key_id, seq)),
            ("envelope_status", _status(bundle, "envelope")),
            ("layout_status", env.status),
        ),
    )


def constants() -> str:
    """The Lua constants block (between :data:`BEGIN` and :data:`END`)."""
    request = {
        messages.FULL_READ: "full read",
        messages.PARTIAL_READ: "partial read",
        messages.FULL_WRITE: "full write",
        messages.PARTIAL_WRITE: "partial write",
    }
    plc, env, cry = lon.PLC_PROFILE, suite.PLC_ENVELOPE, legacy.PLC
    menv, mcry = suite.MEP_ENVELOPE, legacy.MEP
    lines = [BEGIN, f"C.OSGP_VERSION = {lua_str(osgp.__version__)}"]
    lines += _map("REQUEST", request.items())
    lines += _map("RESPONSE", codes.RESPONSE_CODES.items())
    lines += _map("RESPONSE_ABBR", ((int(c), c.name) for c in codes.ResponseCode))
    lines += _map(
        "TABLES",
        ((e.id, (e.name, e.title)) for e in tables.catalogue("table")),
    )
    lines += _map(
        "PROCEDURES",
        ((e.id, (e.name, e.title)) for e in tables.catalogue("procedure")),
    )
    lines += _map("PROC_RESULTS", procedures.RESULT_CODES.items())
    lines += _map(
        "PROC_SELECTORS",
        (
            (procedures.SELECT_ON_COMPLETION, "respond on completion"),
            (procedures.SELECT_ON_EXCEPTION, "respond on exception only"),
            (procedures.SELECT_NONE, "no response"),
            (procedures.SELECT_IMMEDIATE_AND_COMPLETION, "respond at once and on completion"),
        ),
    )
    lines += _record(
        "IDS",
        (
            ("ET", messages.ET),
            ("PENDING", messages.PENDING),
            ("BT07", procedures.BT07),
            ("BT08", procedures.BT08),
            ("AUTH_FAILURE", suite.AUTH_FAILURE),
            ("INVALID_SEQUENCE", suite.INVALID_SEQUENCE),
        ),
    )
    lines += _record(
        "PLC",
        (
            ("name", profiles.PLC.name),
            ("message_code", plc.message_code),
            ("max_apdu", plc.max_apdu),
            ("max_proxy_apdu", plc.max_proxy_apdu),
            ("pdu_spdu", lon.PDU_SPDU),
            ("service_request", plc.service_request),
            ("service_response", plc.service_response),
            ("seq_size", env.seq_size),
            ("digest_size", env.digest_size),
            ("chain_response", env.chain_response),
            ("auth_failure_in_clear", env.auth_failure_in_clear),
            ("key_sizes", list(cry.digest_key_sizes)),
            ("continues_keystream", cry.response_continues_keystream),
            ("rc4_r1", legacy.PLC_R1),
            ("rc4_r2", legacy.PLC_R2),
            ("framing_status", _status(profiles.PLC, "framing")),
            ("envelope_status", _status(profiles.PLC, "envelope")),
            ("proxy_status", _status(profiles.PLC, "proxy")),
        ),
    )
    lines += _record(
        "MEP",
        (
            ("name", profiles.MEP.name),
            ("length_size", mep.PROFILE.length_size),
            ("max_message", mep.PROFILE.max_message),
            ("seq_size", menv.seq_size),
            ("digest_size", menv.digest_size),
            ("chain_response", menv.chain_response),
            ("auth_failure_in_clear", menv.auth_failure_in_clear),
            ("key_sizes", list(mcry.digest_key_sizes)),
            ("continues_keystream", mcry.response_continues_keystream),
            ("const_key", legacy.MEP_CONST_KEY),
            ("framing_status", _status(profiles.MEP, "framing")),
            ("envelope_status", _status(profiles.MEP, "envelope")),
        ),
    )
    lines += _record(
        "PROXY",
        (
            ("code", lon_proxy.PROXY),
            ("fail", lon_proxy.PROXY_FAIL),
            ("max_repeaters", lon_proxy.MAX_REPEATERS),
            ("max_data", lon_proxy.MAX_PROXY_DATA),
            ("mode_alt_key", lon_proxy.MODE_ALT_KEY),
        ),
    )
    # target address bytes by SICB target type (lcs_proxy.h, docs/protocol.md §6.3)
    lines += _map("PROXY_TARGET_LEN", lon_proxy.TARGET_LEN.items())
    lines += _map(
        "PROXY_MODES",
        (
            (lon_proxy.MODE_NORMAL, "normal"),
            (lon_proxy.MODE_ZERO_SYNC, "zero sync"),
            (lon_proxy.MODE_ALT_KEY, "alternate key"),
            (lon_proxy.MODE_ATTENUATE, "attenuate"),
        ),
    )
    lines += _map("EVENTS", events.names(False).items())
    lines += _map("MFG_EVENTS", events.names(True).items())
    lines += _aes_record("AES_PLC", aes_suite.PLC_AES_ENVELOPE, profiles.PLC_AES)
    lines += _aes_record("AES_MEP", aes_suite.MEP_AES_ENVELOPE, profiles.MEP_AES)
    lines.append(END)
    return "\n".join(lines) + "\n"


def template() -> str:
    """The shipped plugin text (its constants block as last generated)."""
    return resources.files("osgp.wireshark").joinpath(PLUGIN_NAME).read_text("utf-8")


def render(text: str) -> str:
    """``text`` with its constants block replaced by a fresh one."""
    start, stop = text.find(BEGIN), text.find(END)
    if start < 0 or stop < start:
        raise ConfigurationError(f"{PLUGIN_NAME}: no generated-constants markers")
    tail = text.index("\n", stop) + 1
    return text[:start] + constants() + text[tail:]


def plugin() -> str:
    """The dissector, its constants generated from this osgp."""
    return render(template())


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m osgp.wireshark.generate", description=__doc__)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--write", action="store_true", help="rewrite the shipped plugin in place")
    g.add_argument("--check", action="store_true", help="exit 1 when the shipped plugin is stale")
    args = ap.parse_args(argv)
    text = plugin()
    if args.check:
        return 0 if text == template() else 1
    if args.write:
        Path(str(resources.files("osgp.wireshark").joinpath(PLUGIN_NAME))).write_text(
            text, encoding="utf-8"
        )
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
