"""``osgp wireshark``: install the OSGP dissector or print it.

``--install`` writes the plugin into Wireshark's personal Lua plugin folder
(``~/.local/lib/wireshark/plugins`` on Linux and macOS,
``%APPDATA%\\Wireshark\\plugins`` on Windows; ``tshark -G folders`` lists it as
"Personal Lua Plugins") and prints the path; ``--dir`` picks another folder.
``--print`` writes the plugin to stdout.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Optional

__all__ = ["add_wireshark_command", "personal_plugin_dir", "install", "run"]


def personal_plugin_dir() -> Path:
    """Wireshark's personal Lua plugin folder for this user (Wireshark User's
    Guide, "Plugin folders")."""
    if sys.platform == "win32":
        base = os.environ.get("APPDATA") or str(Path.home() / "AppData" / "Roaming")
        return Path(base) / "Wireshark" / "plugins"
    return Path.home() / ".local" / "lib" / "wireshark" / "plugins"


def install(directory: Optional[Path] = None) -> Path:
    """Write the plugin into ``directory`` (default: the personal folder)."""
    from osgp.wireshark.generate import PLUGIN_NAME, plugin

    target = (directory or personal_plugin_dir()) / PLUGIN_NAME
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(plugin(), encoding="utf-8")
    return target


def run(args: argparse.Namespace) -> int:
    from osgp.wireshark.generate import plugin

    if args.print:
        sys.stdout.write(plugin())
        return 0
    path = install(Path(args.dir) if args.dir else None)
    print(f"installed the OSGP dissector as {path}")
    print("restart Wireshark (or reload Lua plugins) to use it; keys: see docs/wireshark.md")
    return 0


def add_wireshark_command(subparsers: Any) -> None:
    """Register ``osgp wireshark`` on the ``osgp`` command's subparsers."""
    ws = subparsers.add_parser(
        "wireshark", help="install the OSGP dissector for Wireshark, or print it"
    )
    what = ws.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--install", action="store_true", help="copy it into the personal Lua plugin folder"
    )
    what.add_argument("--print", action="store_true", help="write it to stdout")
    ws.add_argument("--dir", help="install into this folder instead")
    ws.set_defaults(func=run)
