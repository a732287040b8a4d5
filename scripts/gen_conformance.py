"""Rewrite the generated table in README.md's conformance section from the
profile bundles (osgp.session.profiles); tests/test_profiles.py checks it."""

from __future__ import annotations

import sys
from pathlib import Path

from osgp.session.profiles import conformance_table

BEGIN, END = "<!-- conformance:begin -->\n", "<!-- conformance:end -->"


def main() -> int:
    readme = Path(__file__).resolve().parent.parent / "README.md"
    text = readme.read_text(encoding="utf-8")
    head, sep, rest = text.partition(BEGIN)
    _, sep2, tail = rest.partition(END)
    if not sep or not sep2:
        print("README.md has no conformance markers", file=sys.stderr)
        return 1
    readme.write_text(head + BEGIN + conformance_table() + END + tail, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
