"""The ``osgp`` command."""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence


def _selftest(args: argparse.Namespace) -> int:
    from osgp import selftest

    return 1 if selftest.run(sys.stdout, budget=args.budget) else 0


def _simulate(args: argparse.Namespace) -> int:
    import time

    from osgp.sim.serve import MeterServer, serve_cnip

    if (args.kind == "cnip") != (args.link == "plc"):
        print("error: the plc link is served as --kind cnip, and only it", file=sys.stderr)
        return 2
    if args.kind == "cnip":
        return serve_cnip(args, sys.stdout)
    with MeterServer(args.meters, kind=args.kind, link=args.link, seed=args.seed) as server:
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="osgp", description="Open Smart Grid Protocol tools")
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command")
    st = sub.add_parser(
        "selftest", help="known-answer vectors through the installed build, and throughput"
    )
    st.add_argument(
        "--budget", type=float, default=0.3, help="seconds of timing per kernel (default 0.3)"
    )
    st.set_defaults(func=_selftest)
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
    from osgp.sim.serve import add_cnip_arguments

    add_cnip_arguments(sim)
    sim.set_defaults(func=_simulate)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        import osgp

        print(osgp.__version__)
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
