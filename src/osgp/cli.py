"""The ``osgp`` command."""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence


def _selftest(args: argparse.Namespace) -> int:
    from osgp import selftest

    return 1 if selftest.run(sys.stdout, budget=args.budget) else 0


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
