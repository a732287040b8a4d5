"""`osgp op` as the tests drive it: the op commands on a parser of their own,
a fresh SQLite store whose master key is in the environment, and the served
CN/IP meters of a test commissioned into it."""

from __future__ import annotations

import argparse
from typing import Any, List

from osgp.concentrator import KeyVault, Store
from osgp.concentrator.aio import commission
from osgp.concentrator.cli_ops import add_ops_command

MASTER = bytes(range(32))


class OpsCli:
    def __init__(self, tmp_path: Any, monkeypatch: Any) -> None:
        monkeypatch.setenv("OSGP_MASTER_KEY", MASTER.hex())
        self.url = f"sqlite:///{tmp_path / 'c.db'}"
        self.parser = argparse.ArgumentParser(prog="osgp")
        add_ops_command(self.parser.add_subparsers(dest="command"))

    def __call__(self, *argv: str) -> int:
        """Run ``osgp ARGV...``; its exit status."""
        args = self.parser.parse_args(list(argv))
        return args.func(args)

    def store(self) -> Store:
        return Store(self.url, vault=KeyVault(MASTER))

    def commission(self, server: Any, segment: str = "s1") -> List[int]:
        """Commission ``server``'s fleet on ``segment``; the device ids."""
        s = self.store()
        try:
            return commission(s, segment, server.fleet)
        finally:
            s.close()
