"""Memory of a batch run is bounded by one capture file (one partition), not
by the archive: the peak resident set of a run over eight captures is that of
a run over two (docs/batch.md, "Scale")."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

import pytest

from .batch_feeder import build

pytest.importorskip("pyarrow")

# a fresh interpreter per run; its peak resident set is VmHWM of its own address
# space (proc(5); ru_maxrss would carry the forking parent's over execve)
RUN = """
import sys
import pyarrow.compute, pyarrow.parquet  # imported by the first file: part of the base
from osgp.batch import decode_captures
paths = sys.argv[3:]
if paths:
    r = decode_captures(paths, sys.argv[1], keys=sys.argv[2], jobs=1)
    assert r.files == len(paths) and r.rows["load_profile"] > 0, r.as_dict()
    assert sum(r.rejected.values()) > 0
with open("/proc/self/status") as f:
    print([line.split()[1] for line in f if line.startswith("VmHWM:")][0])  # KiB
"""


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    feeder = build(4, seed=11)
    data = feeder.capture
    # SHB and IDB, then the packet blocks repeated: ~2.6 MB a file, so that
    # holding every file would show (draft-ietf-opsawg-pcapng 3.1: length at +4)
    head = struct.unpack_from("<I", data, 4)[0]
    head += struct.unpack_from("<I", data, head + 4)[0]
    big = data[:head] + data[head:] * 12
    d = tmp_path_factory.mktemp("archive")
    paths = []
    for i in range(8):
        p = d / f"c{i}.pcapng"
        p.write_bytes(big)
        paths.append(str(p))
    # one device without its key: every file has rejections (examples are kept)
    keys = {f"{s}/{n}": k.hex() for (s, n), k in sorted(feeder.keys.items())[1:]}
    (d / "keys.json").write_text(json.dumps(keys))
    return d, paths


def peak_kib(d, paths, name):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(["src", os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run(
        [sys.executable, "-c", RUN, str(d / name), str(d / "keys.json"), *paths],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM in /proc/self/status")
@pytest.mark.skipif(
    "libasan" in os.environ.get("LD_PRELOAD", ""),
    reason="AddressSanitizer keeps freed memory in its quarantine, so the peak grows by design",
)
def test_peak_memory_does_not_grow_with_the_number_of_files(archive):
    d, paths = archive
    base = peak_kib(d, [], "none")  # the interpreter with osgp.batch imported
    two = peak_kib(d, paths[:2], "two")
    eight = peak_kib(d, paths, "eight")
    per_file = two - base  # what decoding one file at a time costs on top
    assert per_file > 0
    # four times the input: the peak may grow by allocator noise, not by files
    assert eight - two < 0.25 * per_file, (base, two, eight)
    print(f"peak RSS KiB: base {base}, 2 files {two}, 8 files {eight}")
