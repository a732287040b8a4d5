"""``osgp simulate --link plc --kind cnip`` in another process, for the tests
and benchmarks that talk to simulated meters over real UDP sockets."""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Tuple


@contextmanager
def simulate_cnip(meters: int, *options: str) -> Iterator[Tuple[str, List[Dict[str, Any]]]]:
    """Serve ``meters`` simulated meters as CN/IP (more ``osgp simulate``
    options after the count): yields the channel URL and one record per meter,
    as the command prints them; the process ends with the block."""
    cmd = [sys.executable, "-m", "osgp", "simulate", "--link", "plc", "--kind", "cnip"]
    proc = subprocess.Popen(
        cmd + ["--meters", str(meters), *options], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        url = json.loads(proc.stdout.readline())["url"]
        yield url, [json.loads(proc.stdout.readline()) for _ in range(meters)]
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
