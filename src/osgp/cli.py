"""The ``osgp`` command.

    osgp demo                       a simulated fleet end to end (the README's first command)
    osgp read URL TABLE             read a table from a meter by URL
    osgp call URL PROCEDURE [HEX]   run a procedure (number, BPnn/EPnn)
    osgp collect URL --store DB     one collection of one meter into a store
    osgp export --store DB --out D  readings as Parquet / CSV / JSON
    osgp keys ...                   parse keys, keep them in a store
    osgp op KIND --store DB ...     a fleet operation as a tracked job (clock sync, disconnect, ...)
    osgp simulate                   serve simulated meters on real byte streams
    osgp wireshark --install        the OSGP dissector for Wireshark
    osgp selftest                   known-answer vectors and throughput

Errors print one line naming the meter (URL), the layer and the reason, and
exit with status 1; ``-v`` logs every frame in hex (never a key).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

KEY_HELP = (
    "key: hex (spaces or colons allowed) or the 20-character ASCII form utilities issue. "
    "MEP: the 16-byte MAK (MEP guide p.13-15; default 01 x 16); PLC: the 12-byte OMA key; "
    "optical: the C12.18 password, up to 20 ASCII characters (zero padded) or 40 hex digits"
)


# -- shared ---------------------------------------------------------------------------------
def _jsonable(v: Any) -> Any:
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).hex()
    if hasattr(v, "items"):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)) and not hasattr(v, "_fields"):
        return [_jsonable(x) for x in v]
    if hasattr(v, "_asdict") and hasattr(v, "to_datetime"):  # TimeDate
        try:
            dt = v.to_datetime()
        except ValueError:
            dt = None
        return dt.isoformat() if dt is not None else None
    if hasattr(v, "_asdict"):
        return {k: _jsonable(x) for k, x in v._asdict().items()}
    if hasattr(v, "item"):  # numpy scalars
        return v.item()
    return v


def _key(text: Optional[str], link: str = "mep") -> Optional[bytes]:
    if text is None:
        return None
    from osgp.concentrator.keys import parse_key, parse_password

    return parse_password(text) if link == "optical" else parse_key(text)


class _Meter:
    """A client session for ``url`` on ``link`` with what opening it takes
    (the C12.18 identify/negotiate/logon/security on the optical port)."""

    def __init__(self, url: str, link: str, key: Optional[bytes], address: str) -> None:
        from osgp import session as S
        from osgp.link import carrier as C
        from osgp.link import lon
        from osgp.link import optical as o
        from osgp.security.suite import MEP_ENVELOPE, PLC_ENVELOPE, LegacySuite
        from osgp.transport import open_transport

        self.url, self.link = url, link
        self.opening: list = []
        if link == "mep":
            self.session = S.ClientSession(
                C.MepCarrier(), LegacySuite(key or bytes([1]) * 16, MEP_ENVELOPE)
            )
        elif link == "optical":
            self.session = S.ClientSession(C.OpticalCarrier())
            self.opening = [o.Identify(), o.Negotiate(), o.Logon(2, "osgp")]
            self.opening.append(o.Security(key or b""))
        elif link == "plc":
            if key is None:
                raise _usage("a PLC meter needs --key (its 12-byte OMA key)")
            subnet, _, node = address.partition("/")
            dest = lon.SubnetNode(int(subnet), int(node))
            self.session = S.ClientSession(C.PlcCarrier(dest), LegacySuite(key, PLC_ENVELOPE))
        else:
            raise _usage(f"unknown link {link!r}")
        self.transport = open_transport(url)

    def run(self, op: Any, timeout: float = 30.0) -> Any:
        from osgp.transport.driver import run_until_complete

        return run_until_complete(self.session, self.transport, op, timeout)

    def __enter__(self) -> _Meter:
        from osgp.codes import code_name
        from osgp.errors import DeviceError

        self.transport.__enter__()
        for req in self.opening:
            apdu = self.run(self.session.exchange(req))
            # every C12.18 response opens with its response code (0 ok)
            if apdu[:1] != b"\x00":
                self.transport.__exit__(None, None, None)
                code = apdu[0] if apdu else 0xFF
                name = code_name(code)
                what = type(req).__name__.lower()
                raise DeviceError(
                    code, name, f"{what} refused: device response 0x{code:02X} ({name})"
                )
        return self

    def __exit__(self, *exc: object) -> None:
        self.transport.__exit__(*exc)


def _usage(msg: str) -> Exception:
    from osgp.errors import ConfigurationError

    return ConfigurationError(msg)


def _meter(args: argparse.Namespace) -> _Meter:
    return _Meter(args.url, args.link, _key(args.key, args.link), args.address)


def _add_link_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "url",
        help="device path, pyserial URL (socket://, rfc2217://, osgpsim://) "
        "or udp://host[:port] for CN/IP",
    )
    p.add_argument("--link", choices=("mep", "optical", "plc"), default="mep")
    p.add_argument("--key", help=KEY_HELP)
    p.add_argument("--address", default="1/2", help="PLC: the meter's subnet/node (default 1/2)")
    p.add_argument("--format", choices=("json", "csv", "hex"), default="json")


def _table_id(text: str) -> int:
    from osgp.tables import table_number

    return int(text) if text.isdigit() else table_number(text)


def _emit(args: argparse.Namespace, value: Any, raw: Optional[bytes] = None) -> None:
    if args.format == "hex" and raw is not None:
        print(raw.hex())
    elif args.format == "csv":
        flat: Dict[str, Any] = {}
        _flatten("", _jsonable(value), flat)
        print(",".join(flat))
        print(",".join(str(v) for v in flat.values()))
    else:
        print(json.dumps(_jsonable(value), indent=2))


def _flatten(prefix: str, v: Any, out: Dict[str, Any]) -> None:
    if isinstance(v, dict):
        for k, x in v.items():
            _flatten(f"{prefix}.{k}" if prefix else k, x, out)
    elif isinstance(v, list):
        for i, x in enumerate(v):
            _flatten(f"{prefix}[{i}]", x, out)
    else:
        out[prefix] = v


# -- commands -------------------------------------------------------------------------------
def _demo(args: argparse.Namespace) -> int:
    from osgp.demo import DemoConfig, run_demo, summary

    res = run_demo(
        DemoConfig(
            meters=args.meters,
            segments=args.segments,
            seed=args.seed,
            out=Path(args.out) if args.out else None,
            plots=not args.no_plots,
            capture=args.capture,
            reevaluate=args.reevaluate,
            move_meter=args.move_meter,
        ),
        show=not args.quiet and sys.stderr.isatty(),
    )
    print(summary(res))
    return 0 if res.commissioned and res.rows.get("intervals") else 1


def _read(args: argparse.Namespace) -> int:
    from osgp import tables
    from osgp.errors import OSGPError

    tid = _table_id(args.table)
    with _meter(args) as m:
        if args.offset is not None or args.count is not None:
            raw = m.run(m.session.read(tid, args.offset or 0, args.count))
            _emit(args, {"table": tid, "offset": args.offset or 0, "data": raw}, raw)
            return 0
        raw = m.run(m.session.read(tid))
        context = {}
        for dep in (0, 21, 61, 71):  # dimension tables a layout may need
            if dep != tid and tid in tables.DEFAULT_SET and dep in tables.DEFAULT_SET:
                try:
                    context[f"BT{dep:02d}"] = m.run(m.session.read(dep))
                except OSGPError:  # a meter without that table
                    continue
    try:
        value: Any = tables.decode(tid, raw, context)
    except OSGPError:  # no layout, or not decodable: show the bytes
        value = {"table": tid, "data": raw}
    _emit(args, value, raw)
    return 0


def _procedure(text: str) -> Tuple[int, bool]:
    """(number, manufacturer flag) from ``5``, ``BP05``, ``EP12`` or ``2060``."""
    t = text.strip().upper()
    if t.startswith(("BP", "EP")) and t[2:].isdigit():
        return int(t[2:]), t.startswith("EP")
    if t.isdigit():
        n = int(t)
        return (n - 2048, True) if n >= 2048 else (n, False)
    from osgp.tables import catalogue

    for e in catalogue("procedure"):
        if e.title.upper().replace(" ", "_") == t.replace(" ", "_"):
            return (e.id - 2048, True) if e.id >= 2048 else (e.id, False)
    raise _usage(f"unknown procedure {text!r} (give BPnn, EPnn or a number)")


def _call(args: argparse.Namespace) -> int:
    number, mfg = _procedure(args.procedure)
    params = bytes.fromhex(args.params) if args.params else b""
    with _meter(args) as m:
        result = m.run(m.session.call(number, params, mfg=mfg))
    _emit(args, {"procedure": ("EP" if mfg else "BP") + f"{number:02d}", "result": result})
    return 0


def _open_store(args: argparse.Namespace) -> Any:
    from osgp.concentrator import KeyVault, Store

    vault = None
    if args.master_key_file:
        vault = KeyVault.from_file(args.master_key_file)
    elif os.environ.get("OSGP_MASTER_KEY"):
        vault = KeyVault.from_env()
    return Store(args.store, vault=vault)


def _add_store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--store", required=True, help="database URL (sqlite:///file.db, postgresql://user@host/db)"
    )
    p.add_argument(
        "--master-key-file", help="file with the store's master key (else $OSGP_MASTER_KEY, hex)"
    )


class _WallClock:
    """The concentrator runtime of a command that reads one meter now."""

    def time(self) -> float:
        import time

        return time.monotonic()

    def utc(self, now: float) -> float:
        import time

        return time.time()


@dataclass
class _Target:
    """What a collection task reads of its meter (osgp.concentrator.collect):
    one port's session, no channel or route."""

    device_id: int
    neuron: bytes
    session: Any
    dims: Dict[int, bytes] = field(default_factory=dict)
    cursors: Dict[str, Any] = field(default_factory=dict)  # as last committed, by stream


class _OneMeter:
    """What a collection task asks of its engine, for one meter over one port."""

    def __init__(self, store: Any) -> None:
        self.store, self.runtime = store, _WallClock()

    def save_session(self, meter: Any) -> Tuple[str, Dict[str, Any]]:
        return ("session", meter.session.state())


def _collect(args: argparse.Namespace) -> int:
    from osgp.concentrator.collect import collect
    from osgp.concentrator.engine import run_task

    with _open_store(args) as store, _meter(args) as m:
        ident = m.run(m.session.read(1))
        serial = ident[-16:].decode("ascii", "replace").strip()  # BT01 MFG_SERIAL_NUMBER
        if args.neuron_id:
            neuron = bytes.fromhex(args.neuron_id)
        else:  # ET04 TRANSCEIVER_ID: the 48-bit Neuron ID at offset 4 (MEP guide p.54-67)
            neuron = m.run(m.session.read(2048 + 4, 4, 6))
        dev = store.upsert_device(neuron, serial=serial, segment=args.url, status="normal")

        meter = _Target(dev, neuron, m.session)
        saved = store.cursor(dev, "dims")
        if saved:
            meter.dims = {int(k): bytes.fromhex(v) for k, v in saved.items()}
        eng = _OneMeter(store)
        task = collect(eng, meter, events=True, self_reads=True, present=True)
        stored = run_task(m.session, task, lambda s, op: m.run(op))
    _emit(args, {"device": dev, "serial": serial, "stored": stored})
    return 0


def _export(args: argparse.Namespace) -> int:
    from osgp.concentrator.export import export

    with _open_store(args) as store:
        files = export(store, args.out, args.formats.split(","))
    for kind, paths in files.items():
        print(f"{kind}: " + ", ".join(str(p) for p in paths))
    return 0


def _keys(args: argparse.Namespace) -> int:
    if args.keys_command == "parse":
        k = _key(args.key)
        assert k is not None
        fits = [
            n
            for n, size in (("PLC OMA key", 12), ("MEP MAK/MBK", 16), ("optical password", 20))
            if len(k) == size
        ]
        print(json.dumps({"bytes": len(k), "hex": k.hex(), "fits": fits}))
        return 0
    with _open_store(args) as store:
        if args.keys_command == "set":
            dev = store.device_by_neuron(bytes.fromhex(args.neuron_id))
            if dev is None:
                raise _usage(f"no device with Neuron ID {args.neuron_id} in {args.store}")
            k = _key(args.key, "optical" if args.purpose == "optical" else "mep")
            assert k is not None
            store.put_key(dev.id, args.purpose, k, state=args.state)
            store.audit(_now(), "cli", "key set", f"{args.purpose} ({args.state})", dev.id)
            print(f"stored a {len(k)}-byte {args.purpose} key for {args.neuron_id} ({args.state})")
        else:  # list: which keys exist, never their bytes
            for dev in store.devices():
                have = [
                    f"{p}:{s}"
                    for p in ("plc-omak", "mep", "optical", "aes-psk")
                    for s in ("active", "pending", "retired")
                    if store.key(dev.id, p, state=s) is not None
                ]
                print(f"{dev.neuron_id.hex()}  {dev.serial or '-':<12} {' '.join(have) or '-'}")
    return 0


def _now() -> float:
    import time

    return time.time()


def _selftest(args: argparse.Namespace) -> int:
    from osgp import selftest

    return 1 if selftest.run(sys.stdout, budget=args.budget) else 0


def _simulate(args: argparse.Namespace) -> int:
    import time

    from osgp.sim.serve import CNIP_ONLY, MeterServer, serve_cnip

    if (args.kind == "cnip") != (args.link == "plc"):
        print("error: the plc link is served as --kind cnip, and only it", file=sys.stderr)
        return 2
    if args.kind == "cnip":
        return serve_cnip(args, sys.stdout)
    given = [k for k, default in CNIP_ONLY.items() if getattr(args, k) != default]
    if given:
        names = ", ".join("--" + k.replace("_", "-") for k in given)
        print(f"error: {names}: for --kind cnip only", file=sys.stderr)
        return 2
    with MeterServer(
        args.meters,
        kind=args.kind,
        link=args.link,
        seed=args.seed,
        start_offset=args.start_offset,
    ) as server:
        print(
            f"{args.meters} simulated meter(s), {args.link} link "
            f"({'key 01 x 16' if args.link == 'mep' else 'blank password'}); Ctrl-C stops"
        )
        for serial, url in server.urls().items():
            print(f"{serial}  {url}", flush=True)
        try:
            if args.duration is None:
                while True:
                    time.sleep(3600)
            time.sleep(args.duration)
        except KeyboardInterrupt:
            pass
    return 0


def _add_op(sub: Any) -> None:
    from osgp.concentrator.cli_ops import add_ops_command

    add_ops_command(sub)


def _add_wireshark(sub: Any) -> None:
    from osgp.wireshark.cli import add_wireshark_command

    add_wireshark_command(sub)


def _add_decode(sub: Any) -> None:
    from osgp.batch.cli import add_decode_command

    p = add_decode_command(sub)
    p.add_argument(
        "--master-key-file",
        help="with --keys store:URL: the store's master key file (else $OSGP_MASTER_KEY, hex)",
    )
    p.set_defaults(func=partial(_decode_with_store_keys, p.get_default("func")))


def _decode_with_store_keys(decode: Any, args: argparse.Namespace) -> int:
    """``--keys store:URL``: the legacy (OMA) keys a concentrator's store holds
    for its devices, opened with its master key, by subnet/node and Neuron ID."""
    if not (args.keys or "").startswith("store:"):
        return int(decode(args))
    from osgp.batch import Device, StaticKeys
    from osgp.concentrator.engine import KEY_PURPOSE
    from osgp.errors import OSGPError

    args.store = args.keys[len("store:") :]
    try:
        with _open_store(args) as store:
            keys, url = store.device_keys(KEY_PURPOSE), store.url  # the URL, password masked
    except OSGPError as exc:
        print(f"osgp decode: {exc}", file=sys.stderr)
        return 1
    if not keys:  # e.g. a mistyped path: a new, empty store
        print(f"osgp decode: the store {url} holds no legacy device keys", file=sys.stderr)
        return 1
    found: Dict[Any, bytes] = {}  # Device -> key
    for dev, key in keys:
        found[Device(0, 0, dev.neuron_id)] = key
        if dev.subnet is not None and dev.node is not None:
            found[Device(dev.subnet, dev.node)] = key
    args.keys = StaticKeys(found)
    return int(decode(args))


# Commands whose options come from modules that import the store, the
# simulator or the batch pipeline: listed by name and help, and built in
# full only when the command line names them, so that every other command
# starts without importing them.
_LATE_COMMANDS = {
    "op": (_add_op, "fleet operations on meters as tracked store jobs"),
    "wireshark": (_add_wireshark, "install the OSGP dissector for Wireshark, or print it"),
    "decode": (
        _add_decode,
        "decode pcapng/pcap captures (plain, .gz, .zst) of CN/IP traffic to Parquet",
    ),
}


def _command_named(argv: Optional[Sequence[str]]) -> Optional[str]:
    """The command in ``argv``: its first word that is not an option (the
    top-level options take no value)."""
    for word in sys.argv[1:] if argv is None else argv:
        if not word.startswith("-"):
            return word
    return None


def build_parser(argv: Optional[Sequence[str]] = None) -> argparse.ArgumentParser:
    """The parser of ``argv`` (default ``sys.argv[1:]``), with the options of
    the command it names."""
    command = _command_named(argv)
    p = argparse.ArgumentParser(prog="osgp", description="Open Smart Grid Protocol tools")
    p.add_argument("--version", action="store_true", help="print the version and exit")
    p.add_argument("-v", "--verbose", action="store_true", help="log every frame in hex")
    sub = p.add_subparsers(dest="command")

    d = sub.add_parser(
        "demo",
        help="a simulated fleet discovered, commissioned, collected, "
        "exported and plotted (no hardware)",
    )
    d.add_argument("--meters", type=int, default=1000, help="fleet size (default 1000)")
    d.add_argument("--segments", type=int, default=4, help="power-line segments (default 4)")
    d.add_argument("--seed", type=int, default=1)
    d.add_argument(
        "--out", help="folder for the store, exports and plots (default ./osgp-demo-DATE-TIME)"
    )
    d.add_argument("--no-plots", action="store_true")
    d.add_argument("--capture", action="store_true", help="also write capture.pcapng")
    d.add_argument("--quiet", action="store_true", help="no progress bars")
    d.add_argument(
        "--reevaluate", action="store_true", help="re-evaluate the topology at 14 h (discovery)"
    )
    d.add_argument(
        "--move-meter", action="store_true", help="move a meter to another segment at 13 h"
    )
    d.set_defaults(func=_demo)

    r = sub.add_parser("read", help="read a table (BTnn, ETnn or a number)")
    _add_link_args(r)
    r.add_argument("table")
    r.add_argument("--offset", type=int, help="partial read from this offset")
    r.add_argument("--count", type=int, help="partial read of this many bytes")
    r.set_defaults(func=_read)

    c = sub.add_parser("call", help="run a procedure (BPnn, EPnn, a number or its name)")
    _add_link_args(c)
    c.add_argument("procedure")
    c.add_argument("params", nargs="?", default="", help="parameters in hex")
    c.set_defaults(func=_call)

    co = sub.add_parser(
        "collect", help="collect registers, load profile and events of one meter into a store"
    )
    _add_link_args(co)
    _add_store_args(co)
    co.add_argument("--neuron-id", help="the meter's 48-bit id in hex (default: ET04's)")
    co.set_defaults(func=_collect)

    e = sub.add_parser("export", help="readings from a store as Parquet, CSV and JSON")
    _add_store_args(e)
    e.add_argument("--out", required=True)
    e.add_argument("--formats", default="parquet,csv,json")
    e.set_defaults(func=_export)

    k = sub.add_parser("keys", help="parse keys; set and list the keys of a store")
    ks = k.add_subparsers(dest="keys_command", required=True)
    kp = ks.add_parser("parse", help="show what a key argument means")
    kp.add_argument("key", help=KEY_HELP)
    kset = ks.add_parser("set", help="store a device key (sealed under the master key)")
    _add_store_args(kset)
    kset.add_argument("neuron_id")
    kset.add_argument("purpose", choices=("plc-omak", "mep", "optical", "aes-psk"))
    kset.add_argument("key", help=KEY_HELP)
    kset.add_argument("--state", choices=("active", "pending"), default="active")
    kl = ks.add_parser("list", help="which keys a store holds (never the keys)")
    _add_store_args(kl)
    k.set_defaults(func=_keys)

    sim = sub.add_parser("simulate", help="serve simulated meters and print their URLs")
    sim.add_argument("--meters", type=int, default=1, help="how many (default 1)")
    sim.add_argument(
        "--kind",
        choices=("pty", "tcp", "cnip"),
        default="pty",
        help="pseudo-terminals (serial device paths), loopback TCP (socket://) "
        "or CN/IP on one UDP socket (--link plc)",
    )
    sim.add_argument("--link", choices=("mep", "optical", "plc"), default="mep")
    sim.add_argument("--seed", type=int, default=1, help="meters and their load from this seed")
    sim.add_argument(
        "--duration", type=float, default=None, help="seconds to serve (default: until Ctrl-C)"
    )
    if command == "simulate":
        from osgp.sim.serve import add_cnip_arguments

        add_cnip_arguments(sim)
    sim.set_defaults(func=_simulate)

    st = sub.add_parser(
        "selftest", help="known-answer vectors through the installed build, and throughput"
    )
    st.add_argument(
        "--budget", type=float, default=0.3, help="seconds of timing per kernel (default 0.3)"
    )
    st.set_defaults(func=_selftest)

    for name, (add_command, help_text) in _LATE_COMMANDS.items():
        if name == command:
            add_command(sub)
        else:
            sub.add_parser(name, help=help_text)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    from osgp.errors import OSGPError

    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if args.version:
        import osgp

        print(osgp.__version__)
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if args.verbose:
        logging.basicConfig(level=logging.DEBUG, format="%(name)s %(message)s")
    try:
        return int(args.func(args))
    except OSGPError as exc:
        where = getattr(args, "url", None) or getattr(args, "store", None) or "osgp"
        print(f"osgp {args.command}: {where}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
